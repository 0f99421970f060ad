"""Run a command with its stderr on a pseudo-terminal, as a user at a terminal sees it."""

import fcntl
import os
import pty
import struct
import subprocess
import termios


def stderr_on_a_terminal(cmd, env, timeout=600) -> bytes:
    """What ``cmd`` writes to stderr when stderr is a 120-column terminal; asserts it exits 0."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:   # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=timeout) == 0, shown[-2000:]
    return shown
