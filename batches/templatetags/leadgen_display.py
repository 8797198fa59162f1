"""Template filters of `leadgen.display`.

`{{ value|usd }}`, `{{ seconds|duration }}`, `{{ text|error_line }}`, `{{ value|percent }}`.
"""

from django import template

from leadgen import display

register = template.Library()

register.filter("usd", display.usd)
register.filter("duration", display.duration_text)
register.filter("error_line", display.error_line)
register.filter("percent", display.percent_text)
register.filter("code_label", display.code_label)
