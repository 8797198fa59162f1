"""Realistic provider responses (trimmed copies of the real formats) for the replay server."""

import io

from PIL import Image

PAGESPEED = {
    "captchaResult": "CAPTCHA_NOT_NEEDED",
    "kind": "pagespeedonline#result",
    "id": "https://www.smile-dental.com/",
    "loadingExperience": {"id": "https://www.smile-dental.com/", "overall_category": "AVERAGE"},
    "lighthouseResult": {
        "requestedUrl": "https://www.smile-dental.com/",
        "finalUrl": "https://www.smile-dental.com/",
        "lighthouseVersion": "12.2.1",
        "fetchTime": "2026-11-20T10:15:02.123Z",
        "categories": {
            "performance": {"id": "performance", "title": "Performance", "score": 0.42},
            "accessibility": {"id": "accessibility", "title": "Accessibility", "score": 0.87},
            "best-practices": {"id": "best-practices", "title": "Best Practices", "score": 0.96},
            "seo": {"id": "seo", "title": "SEO", "score": 0.815},
        },
        "audits": {
            "first-contentful-paint": {
                "id": "first-contentful-paint",
                "title": "First Contentful Paint",
                "score": 0.31,
                "scoreDisplayMode": "numeric",
                "numericValue": 3960.2,
                "displayValue": "4.0 s",
            },
            "largest-contentful-paint": {
                "id": "largest-contentful-paint",
                "title": "Largest Contentful Paint",
                "score": 0.05,
                "scoreDisplayMode": "numeric",
                "numericValue": 8120.5,
                "displayValue": "8.1 s",
            },
            "render-blocking-resources": {
                "id": "render-blocking-resources",
                "title": "Eliminate render-blocking resources",
                "score": 0,
                "scoreDisplayMode": "metricSavings",
                "displayValue": "Potential savings of 1,240 ms",
            },
            "image-alt": {
                "id": "image-alt",
                "title": "Image elements do not have [alt] attributes",
                "score": 0,
                "scoreDisplayMode": "binary",
            },
            "document-title": {
                "id": "document-title",
                "title": "Document has a <title> element",
                "score": 1,
                "scoreDisplayMode": "binary",
            },
            "final-screenshot": {"id": "final-screenshot", "score": None, "scoreDisplayMode": "informative"},
        },
    },
    "analysisUTCTimestamp": "2026-11-20T10:15:02.123Z",
}

SEMRUSH = (
    "Database;Domain;Rank;Organic Keywords;Organic Traffic;Organic Cost;Adwords Keywords;Adwords Traffic;"
    "Adwords Cost\r\nus;smile-dental.com;1873422;214;389;1204;3;18;45\r\n"
)


def jpeg(width: int = 64, height: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


HUNTER = {
    "data": {
        "domain": "smile-dental.com",
        "disposable": False,
        "webmail": False,
        "accept_all": True,
        "pattern": "{first}",
        "organization": "Smile Dental",
        "emails": [
            {
                "value": "info@smile-dental.com",
                "type": "generic",
                "confidence": 91,
                "sources": [{"domain": "smile-dental.com", "uri": "http://smile-dental.com/contact"}],
                "first_name": None,
                "last_name": None,
                "position": None,
            },
            {
                "value": "maria@smile-dental.com",
                "type": "personal",
                "confidence": 96,
                "sources": [],
                "first_name": "Maria",
                "last_name": "Garcia",
                "position": "Office Manager",
            },
        ],
        "linked_domains": [],
    },
    "meta": {"results": 2, "limit": 10, "offset": 0, "params": {"domain": "smile-dental.com"}},
}

LLM = {
    "id": "chatcmpl-AbC123",
    "object": "chat.completion",
    "created": 1763633702,
    "model": "test-model",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": (
                    '{"summary": "Smile Dental loads slowly on phones.", '
                    '"top_issues": ["Slow largest contentful paint (8.1 s)", "Images without alt text"], '
                    '"quick_wins": ["Compress the hero image", "Add alt text to images"]}'
                ),
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1234, "completion_tokens": 321, "total_tokens": 1555},
}

WEBSITE = """<!DOCTYPE html>
<html lang="en-US"><head><meta charset="utf-8">
<title>Smile Dental | Family Dentist in Austin</title>
<meta name="description" content="Gentle family dentistry in Austin, TX.">
<meta name="viewport" content="width=device-width, initial-scale=1">
</head><body><h1>Smile  Dental</h1>
<img src="/a.jpg" alt="Our office"><img src="/b.jpg"><img src="/c.jpg" alt="">
<p>Call us today.</p></body></html>"""
