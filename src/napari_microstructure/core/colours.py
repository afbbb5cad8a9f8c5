"""The one colour table of the plugin: classes, "none", outliers, space groups.

The napari widgets (probability-map layers and their legend, EBSD maps and
their legend) and the Explain figures (descriptor maps) take their colours
from here, so a class has the same colour everywhere. The class colours are
the Okabe-Ito palette without its red (red is kept for outliers), readable
on napari's dark theme and by colour-blind readers.
"""

from __future__ import annotations

from typing import Any

#: class colours in class order (hex RGB)
CLASS_COLOURS = ("#56b4e9", "#e69f00", "#009e73", "#f0e442", "#cc79a7", "#0072b2", "#a6761d", "#66c2a5")
#: "none of these" (the open-set class) in probability stacks and legends
NONE_COLOUR = "#9e9e9e"
#: pixels flagged as outliers (the "none" probability above the threshold)
OUTLIER_COLOUR = "#ff1f1f"
#: fixed colours of the six cubic space groups of Kaufmann et al.
SPACE_GROUP_COLOURS = {221: "#e69f00", 223: "#f0e442", 225: "#56b4e9", 227: "#cc79a7",
                       229: "#009e73", 230: "#0072b2"}
#: EBSD patterns whose best probability is under the confidence threshold
NO_SOLUTION_COLOUR = "#ff00ff"


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """``"#rrggbb"`` as RGB in 0-1."""
    c = colour.lstrip("#")
    return tuple(int(c[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def class_colour(index: int, n_classes: int) -> str:
    """Colour of micrograph class ``index``; index ``n_classes`` (and above) is "none"."""
    if index >= n_classes:
        return NONE_COLOUR
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def label_colour(label: Any, index: int) -> str:
    """Colour of an EBSD class: fixed for a cubic space group, else the class table's ``index``."""
    try:
        return SPACE_GROUP_COLOURS[int(label)]
    except (KeyError, ValueError, TypeError):
        return CLASS_COLOURS[index % len(CLASS_COLOURS)]
