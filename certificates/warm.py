"""Imported once by the render pool's fork server: everything a worker needs, parsed before it forks.

Each worker process is then forked from a process that has already imported fpdf2, fontTools,
HarfBuzz and pikepdf and parsed the default template's fonts, so it is ready at once and shares
those pages with its siblings (copy on write).
"""

from certificates.renderer import get_renderer
from certificates.loader import load_template

get_renderer(load_template("default"))
