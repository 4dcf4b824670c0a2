"""From scored results to the report: rules (verdicts as data), figures, the template context (every table's
rows), rendering to HTML / PDF / Markdown / JSON, and the comparison of two runs. No torch."""
