"""Reports: what notebooks publish, the rendered run reports, and the static index site.

publish(metric=..., value=..., status=..., figure=..., name=..., **values)   from a notebook
build_index(settings) -> path of <reports>/index.html
render_report(nb, record, declared) -> HTML of one run
show_html(path, title) -> an HTML artifact shown in the notebook and linked from its report
"""

from .artifacts import show_html
from .publish import PUBLISH_MIMETYPE, collect, publish
from .render import render_report
from .serve import make_server
from .site import build_index

__all__ = ["publish", "build_index", "render_report", "make_server", "collect", "PUBLISH_MIMETYPE", "show_html"]
