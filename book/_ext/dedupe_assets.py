"""Sphinx extension: drop repeated script entries from every page.

Jupyter Book 1.0.4 registers sphinx-thebe's and sphinx-togglebutton's inline scripts twice, so every page declared
``const THEBE_JS_URL`` twice and the browser reported a SyntaxError (found by ``scripts/browser_check.py``)."""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {})
        key = (str(getattr(js, "filename", None) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"][:] = kept  # in place: handlers after this one (MathJax's) add to the same list


def setup(app):
    app.connect(
        "html-page-context", _dedupe, priority=100
    )  # early: the event stops at the first handler returning a template
    return {"parallel_read_safe": True, "parallel_write_safe": True}
