"""Kinematical simulation of Kikuchi patterns of cubic crystals (space groups 221-230).

Sub-modules, one idea each:

- :mod:`.symmetry`: operations and reflection conditions of the six space groups;
- :mod:`.structures`: named materials, prototypes with random parameters, random structures;
- :mod:`.kinematics`: structure factors, Bragg angles, visible reflectors, label ambiguity;
- :mod:`.detector`: detector geometry and the noise-free band image;
- :mod:`.noise`: background, blur, shot/read noise, defects, digitisation;
- :mod:`.domain`: domain-randomised sessions for pretraining and held-out evaluation;
- :mod:`._legacy`: the original generator behind the sample data and fast tests
  (``simulate_patterns``, ``simulate_training_set``, ``simulate_dual_phase_map``,
  ``make_sample_data``), re-exported here.
"""

from ._legacy import *  # noqa: F401,F403
from ._legacy import (  # noqa: F401
    SAMPLE_SETTINGS, _simulate_grouped_pc, make_sample_data, quaternions_to_matrices, random_rotations,
    simulate_dual_phase_map, simulate_patterns, simulate_training_set, small_rotations, write_sample_data)
from .detector import GEOMETRY_RANGES, DetectorGeometry, band_image, detector_directions, sample_geometry  # noqa: F401
from .domain import (Session, StructureSampler, sample_session, session_reflectors,  # noqa: F401
                     simulate_session, simulate_space_groups)
from .kinematics import (Reflectors, consistent_space_groups, electron_wavelength, is_unambiguous,  # noqa: F401
                         reflectors, structure_factors)
from .noise import NOISE_RANGES, Acquisition, acquire, sample_acquisition  # noqa: F401
from .structures import (ALL_MATERIALS, EXTRA_MATERIALS, HELD_OUT_PROTOTYPES, MATERIALS, NON_CUBIC,  # noqa: F401
                         PROTOTYPES, CrystalStructure, CubicStructure, hexagonal_lattice, draw_prototype,
                         random_non_cubic_structure, random_structure)
from .symmetry import SPACE_GROUPS, SYMBOLS, allowed_reflections, operations, orbit  # noqa: F401
