"""Hostile websites against the live website audit, with a canary standing in for internal services.

Every case runs in live mode through report_generate, the way a batch runs a lead. The canary on
127.0.0.1 (and [::1]) counts every request it gets: each case asserts it got none. The "public" site is
a stand-in on 127.0.0.2, the only address EGRESS_ALLOWED_NETWORKS opens here; the providers' APIs are
the replay server (their base URLs are the operator's, not subject to the policy). Names resolve
through a fake resolver, so nothing here asks real DNS.
"""

import asyncio
import csv
import gzip
import socket
import time
import tracemalloc

import httpx
import pytest

from leadgen import egress
from leadgen.tests.servers import SECRET, SITE_ADDRESS
from reports.models import ProviderCall, ProviderResult
from reports.providers.website import MAX_PAGE_BYTES
from reports.services import report_generate
from reports.tests.test_providers_live import SUCCESS_BODIES

PUBLIC = "93.184.216.34"


class FakeDns:
    """Answers names from a table (lists are answered in turn, the last one repeated)."""

    def __init__(self):
        self.table: dict[str, list[list[str]]] = {}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host == "localhost":
            return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def dns(canary):
    resolver = FakeDns()
    resolver.table.update(
        {
            "db.internal": [["10.0.0.5"]],
            "canary.test": [["127.0.0.1"]],
            "canary6.test": [["::1"]],
            "mapped.test": [["::ffff:127.0.0.1"]],
            "metadata.test": [["169.254.169.254"]],
            "mixed.test": [[PUBLIC, "127.0.0.1"]],
            "shop.test": [[PUBLIC]],
            "site.test": [[SITE_ADDRESS]],
        }
    )
    with egress.override_resolver(resolver):
        yield resolver


@pytest.fixture
def live(replay_server, settings, dns):
    for name, (body, headers) in SUCCESS_BODIES.items():
        if name != "website":
            replay_server.answer(name, 200, body, headers)
    settings.EGRESS_ALLOWED_NETWORKS = [f"{SITE_ADDRESS}/32"]
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "website": 3.0}
    return replay_server


def generate(lead_factory, website: str):
    lead = lead_factory(website=website, email="owner@example.com")
    return lead, report_generate(lead=lead, partial=True)


def refused_cases(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[::127.0.0.1]:{port}/",
        f"http://[64:ff9b::7f00:1]:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
        f"http://canary.test:{port}/",
        f"http://canary6.test:{port}/",
        f"http://mapped.test:{port}/",
        f"http://mixed.test:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.test/latest/meta-data/",
        "http://10.0.0.5/",
        "http://db.internal/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        f"http://{PUBLIC}:22/",
        "http://shop.test:8080/",
        "ftp://shop.test/",
        "file:///etc/passwd",
        "gopher://shop.test/",
    ]


CASES = len(refused_cases(0))


@pytest.mark.parametrize("case", range(CASES))
def test_a_refused_website_fails_at_once_and_nothing_is_sent(live, canary, lead_factory, case):
    website = refused_cases(canary.port)[case]

    lead, outcome = generate(lead_factory, website)

    assert outcome.report is None
    assert (outcome.error.code, outcome.error.provider, outcome.error.transient) == (
        "blocked_address",
        "website",
        False,
    )
    assert outcome.error.message
    assert canary.hits == []
    # No provider was asked about the lead either.
    assert live.requests == []
    calls = list(ProviderCall.objects.filter(lead=lead).values_list("provider", "status", "error_code"))
    assert calls == [("website", "failed", "blocked_address")]


def test_the_message_says_what_was_refused(live, canary, lead_factory):
    _, outcome = generate(lead_factory, "http://db.internal/")
    assert outcome.error.message == "db.internal resolves to 10.0.0.5: 10.0.0.5 is a private address"
    _, outcome = generate(lead_factory, "http://169.254.169.254/")
    assert outcome.error.message == "169.254.169.254 is a link-local address"


def redirect_targets(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/admin",
        f"http://127.1:{port}/",
        f"http://localhost:{port}/",
        f"http://[::1]:{port}/",
        f"http://canary.test:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://db.internal/",
        "file:///etc/passwd",
        "ftp://shop.test/",
        f"http://{PUBLIC}:6379/",
    ]


@pytest.mark.parametrize("case", range(len(redirect_targets(0))))
def test_a_redirect_into_a_refused_address_fails_the_lead(live, canary, site, lead_factory, case):
    target = redirect_targets(canary.port)[case]
    site.redirect("/hop2", target, status=307)
    first = site.redirect("/", f"{site.base_url}/hop2", status=301)

    _, outcome = generate(lead_factory, first)

    assert outcome.report is None
    assert outcome.error.code == "blocked_address"
    assert [path for _, path, _ in site.requests] == ["/", "/hop2"]
    assert canary.hits == []


def test_a_redirect_chain_is_cut_at_the_hop_limit(live, canary, site, lead_factory):
    for hop in range(10):
        site.redirect(f"/r{hop}", f"{site.base_url}/r{hop + 1}")

    _, outcome = generate(lead_factory, f"{site.base_url}/r0")

    # The lead's own problem: the report is built without the website section.
    assert outcome.error is None
    assert [warning["code"] for warning in outcome.warnings] == ["too_many_redirects"]
    assert len(site.requests) == egress.MAX_REDIRECTS + 1


def test_a_redirect_within_the_policy_is_followed(live, canary, site, lead_factory):
    site.page("/home", "<html><title>Welcome</title><h1>Home</h1></html>")
    first = site.redirect("/", f"http://site.test:{site.port}/home")

    _, outcome = generate(lead_factory, first)

    assert outcome.error is None
    seo = outcome.report.data["seo"]
    assert seo["title"] == "Welcome"
    assert site.requests[1] == ("GET", "/home", f"site.test:{site.port}")


def test_a_site_cannot_leave_cookies_for_the_next_lead(live, canary, site, lead_factory):
    """Cookies live for one audit's redirect chain only: a site that sets one expects it on the next
    hop and gets it, and the next audit of that site sends none (a worker's client would otherwise keep
    the cookies of every site it audited, for the life of the process)."""
    sent: list[tuple[str, str | None]] = []

    def first(handler):
        sent.append((handler.path, handler.headers.get("Cookie")))
        headers = {"Location": f"http://site.test:{site.port}/home"}
        if len(sent) == 1:
            headers["Set-Cookie"] = "visited=1; Path=/"
        handler.send(302, b"", headers)

    def home(handler):
        sent.append((handler.path, handler.headers.get("Cookie")))
        handler.send(200, b"<html><title>Home</title></html>", {"Content-Type": "text/html"})

    site.route("/", first)
    site.route("/home", home)
    url = f"http://site.test:{site.port}/"

    for _ in range(2):
        lead = lead_factory(website=url, email="owner@example.com")
        outcome = report_generate(lead=lead, partial=True, cache_lookup=False)
        assert outcome.error is None
        assert outcome.report.data["seo"]["title"] == "Home"

    assert sent == [("/", None), ("/home", "visited=1"), ("/", None), ("/home", None)]


def test_a_dns_answer_that_changes_after_the_check_cannot_swap_the_address(live, canary, site, dns):
    """The first answer is vetted and connected to; a second lookup (what the system resolver would do
    at connection time) would answer the canary."""
    site.page("/", "<html><title>Real site</title></html>")
    dns.table["rebind.test"] = [[SITE_ADDRESS], ["127.0.0.1"]]

    async def fetch():
        async with httpx.AsyncClient(transport=egress.EgressTransport(), trust_env=False) as client:
            return await client.get(f"http://rebind.test:{site.port}/")

    response = asyncio.run(fetch())

    assert response.status_code == 200
    assert "Real site" in response.text
    assert site.requests == [("GET", "/", f"rebind.test:{site.port}")]
    assert dns.asked == ["rebind.test"]
    assert canary.hits == []


def test_a_rebinding_name_fails_the_lead_without_reaching_the_canary(live, canary, site, dns, lead_factory):
    site.page("/", "<html><title>Real site</title></html>")
    dns.table["rebind.test"] = [[SITE_ADDRESS], ["127.0.0.1"]]

    _, outcome = generate(lead_factory, f"http://rebind.test:{site.port}/")

    assert outcome.error.code == "blocked_address"
    assert canary.hits == []
    assert site.requests == []


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(live, canary, site, lead_factory):
    head = b"<html><head><title>Bomb</title></head><body>"
    bomb = gzip.compress(head + b" " * 100_000_000, compresslevel=9)
    assert len(bomb) < 200_000
    site.page("/", bomb, {"Content-Encoding": "gzip"})

    tracemalloc.start()
    try:
        _, outcome = generate(lead_factory, f"{site.base_url}/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 30_000_000
    assert outcome.error is None
    audit = ProviderResult.objects.get(provider="website", subject=SITE_ADDRESS).data
    assert (audit["title"], audit["page_bytes"], audit["page_truncated"]) == ("Bomb", MAX_PAGE_BYTES, True)
    assert canary.hits == []


def test_an_oversized_page_is_read_only_up_to_the_cap(live, canary, site, lead_factory):
    page = b"<html><head><title>Huge</title></head><body>" + b"<p>" + b"filler text " * 1_050_000 + b"</p>"
    assert len(page) > 12_000_000
    site.page("/", page)

    tracemalloc.start()
    try:
        _, outcome = generate(lead_factory, f"{site.base_url}/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 12_000_000
    assert outcome.error is None
    audit = ProviderResult.objects.get(provider="website", subject=SITE_ADDRESS).data
    assert (audit["title"], audit["page_bytes"], audit["page_truncated"]) == ("Huge", MAX_PAGE_BYTES, True)


def test_a_slow_drip_ends_at_the_total_deadline(live, canary, site, lead_factory, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "website": 1.0}
    url = site.drip("/", every=0.2, pieces=50)

    started = time.monotonic()
    _, outcome = generate(lead_factory, url)

    assert time.monotonic() - started < 3.0
    assert (outcome.error.code, outcome.error.transient) == ("timeout", True)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, f"Traceback: password={SECRET} at db.internal:5432", "text/plain"),
        (503, f'{{"error": {{"message": "{SECRET}"}}}}', "application/json"),
        (404, f'{{"error": "{SECRET}"}}', "application/json"),
        (403, f"{SECRET} forbidden", "text/plain"),
    ],
)
def test_an_error_page_body_is_never_stored_or_shown(
    live, canary, site, lead_factory, status, body, content_type
):
    site.page("/", body, {"Content-Type": content_type}, status=status)

    lead, outcome = generate(lead_factory, f"{site.base_url}/")

    # 5xx fail the attempt (transient); 4xx leave the website section out (the lead's own).
    problems = [outcome.error.__dict__] if outcome.error else outcome.warnings
    assert [(problem["code"], problem["message"]) for problem in problems] == [
        (f"http_{status}", f"{'server error' if status >= 500 else 'request refused'} (HTTP {status})")
    ]
    assert SECRET not in ProviderCall.objects.get(lead=lead, provider="website").error
    if outcome.report is not None:
        assert SECRET not in outcome.report.html


def test_hostile_page_text_is_stored_clean_and_rendered_escaped(live, canary, site, lead_factory):
    page = (
        "<html lang='en\x00'><head><title>Cheap\x00 \u202eeciffo\u202c &lt;script&gt;alert(1)&lt;/script&gt;"
        "\u200b</title><meta name=description content='=HYPERLINK(\"http://evil\")\x07'></head>"
        "<body><h1>\x1b[31mRed\x1b[0m &#0; &lt;img src=x onerror=alert(2)&gt;</h1></body></html>"
    )
    site.page("/", page)

    _, outcome = generate(lead_factory, f"{site.base_url}/")

    assert outcome.error is None
    audit = ProviderResult.objects.get(provider="website", subject=SITE_ADDRESS).data
    assert audit["title"] == "Cheap eciffo <script>alert(1)</script>"
    assert audit["meta_description"] == '=HYPERLINK("http://evil")'
    assert audit["h1"] == "[31mRed[0m \ufffd <img src=x onerror=alert(2)>"
    html = outcome.report.html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html


def test_nothing_of_the_body_is_stored_beyond_the_parsed_facts(live, canary, site, lead_factory):
    site.page("/", f"<html><title>Shop</title><body><p>{SECRET}</p><!-- {SECRET} --></body></html>")

    _, outcome = generate(lead_factory, f"{site.base_url}/")

    assert outcome.error is None
    audit = ProviderResult.objects.get(provider="website", subject=SITE_ADDRESS).data
    assert SECRET not in repr(audit)
    assert SECRET not in outcome.report.html
    assert set(audit) == {
        "url",
        "final_url",
        "status_code",
        "https",
        "response_time_ms",
        "page_bytes",
        "title",
        "meta_description",
        "h1",
        "h1_count",
        "has_viewport",
        "images_total",
        "images_missing_alt",
        "lang",
        "page_truncated",
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://169.254.169.254/",
        "http://shop.example:8080/",
        "ftp://shop.example/",
        "javascript:alert(1)",
        "http://",
    ],
)
def test_url_check_refuses_by_syntax_alone(settings, url):
    settings.EGRESS_ALLOWED_NETWORKS = []
    with pytest.raises(egress.EgressRefused):
        egress.url_check(url)


def test_allowed_networks_open_their_addresses_on_any_port(settings):
    settings.EGRESS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert egress.url_check("http://10.20.3.4:8080/").host == "10.20.3.4"
    assert egress.url_check("http://intranet.example:8080/").port == 8080
    with pytest.raises(egress.EgressRefused, match=r"10\.21\.0\.1 is a private address"):
        egress.url_check("http://10.21.0.1/")
    with pytest.raises(egress.EgressRefused, match="port 8080"):
        egress.url_check(f"http://{PUBLIC}:8080/")
    assert egress.url_check("https://shop.example/").host == "shop.example"


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A certificate for `name` (PEM) and its key (PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_https_connects_to_the_vetted_address_with_the_name_in_sni_and_the_certificate(
    live, canary, dns, tmp_path
):
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cert, key = self_signed("secure.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    seen = {"sni": [], "host": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen["host"].append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_context.sni_callback = lambda sock, name, context: seen["sni"].append(name)
    server = ThreadingHTTPServer((SITE_ADDRESS, 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = server.server_port
    client_context = ssl.create_default_context(cadata=cert.decode())
    dns.table["secure.test"] = [[SITE_ADDRESS]]
    dns.table["other.test"] = [[SITE_ADDRESS]]

    async def get(url):
        transport = egress.EgressTransport(ssl_context=client_context)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            return await client.get(url)

    try:
        response = asyncio.run(get(f"https://secure.test:{port}/"))
        assert (response.status_code, response.text) == (200, "ok")
        assert seen == {"sni": ["secure.test"], "host": [f"secure.test:{port}"]}
        # Another name on the same address gets no certificate it does not own.
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            asyncio.run(get(f"https://other.test:{port}/"))
    finally:
        server.shutdown()
        server.server_close()
    assert canary.hits == []


@pytest.mark.django_db(transaction=True)
def test_in_a_batch_a_refused_lead_fails_at_once_and_the_others_go_on(live, canary, site, lead_factory):
    from rest_framework.test import APIClient

    from batches.exports import CSV_HEADER
    from batches.models import BatchReportLead
    from batches.services import batch_create_and_launch
    from batches.tests.engine import make_user, run_to_end

    site.page("/", "<html><title>Fine</title></html>")
    good = lead_factory(website=f"{site.base_url}/", email="a@example.com")
    internal = lead_factory(website=f"http://127.0.0.1:{canary.port}/", email="b@example.com")
    metadata = lead_factory(website="http://metadata.test/latest/meta-data/", email="c@example.com")
    user = make_user()
    batch, _ = batch_create_and_launch(
        user=user, lead_ids=[good.pk, internal.pk, metadata.pk], name="probe", max_retries=3, enqueue=False
    )

    batch = run_to_end(batch.pk)

    row = BatchReportLead.objects.get(batch=batch, lead=good)
    assert (row.status, row.error_code) == ("succeeded", "")
    for lead in (internal, metadata):
        row = BatchReportLead.objects.get(batch=batch, lead=lead)
        assert (row.status, row.attempts, row.error_code) == ("failed", 1, "blocked_address")
    assert BatchReportLead.objects.get(batch=batch, lead=metadata).last_error == (
        "website: metadata.test resolves to 169.254.169.254: 169.254.169.254 is a link-local address"
    )
    assert batch.status == "completed_with_errors"
    client = APIClient()
    client.force_authenticate(user=type(user).objects.create_superuser("root", "root@example.com", "pw"))
    export = client.get(f"/api/batches/{batch.pk}/export.csv")
    text = b"".join(export.streaming_content).decode()
    codes = [line[CSV_HEADER.index("error_code")] for line in list(csv.reader(text.splitlines()))[1:]]
    assert sorted(codes) == ["", "blocked_address", "blocked_address"]
    assert SECRET not in text
    assert canary.hits == []
