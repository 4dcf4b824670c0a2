"""Jinja2 templates of the report (shipped inside the installed package as reportgen.templates)."""
