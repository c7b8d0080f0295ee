"""Outlook (Microsoft Graph) bench on the loopback Graph stand-in: ``python -m bench.graph [--size 10000]``.

One child process serves the test authorization server and the Graph stand-in (tests/servers/graph.py,
not Microsoft Graph) with the IMAP bench's mailbox mix; every case runs in a fresh child process. For
each case it prints wall time, HTTP requests and reply bytes per 1,000 messages (and requests inside
``$batch``), the stand-in's own CPU, the client's CPU and peak memory, and the stand-in's peak
concurrency, so the ratios against the peers are measured in the same run:

- ``postroom``: the loop reading subject, sender, date, text body and attachment names;
- ``postroom-headers``: the same without the body;
- ``o365``: python-o365 (``O365``) doing the same, as its docs show (pages of 999, attachments downloaded
  for their names);
- ``msgraph-sdk``: Microsoft's SDK tuned: ``$select`` with the body, ``$expand`` of attachment names,
  pages of 1,000 followed with ``with_url(odata_next_link)`` (every body downloaded, read or not);
- ``msgraph-sdk-plain``: the SDK's plain paging: its defaults (every field, pages of 10), attachments
  listed per message that has some;
- ``postroom-move`` / ``o365-move``: moving 1,000 messages to Archive.

The peers get their token from the same authorization server, handed to them directly (their own
sign-in code would go to login.microsoftonline.com, which this machine cannot reach).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.children import report, run_child, served
from bench.mailbox import generate

USER = "bench@example.test"
CLIENT, SECRET = "postroom-daemon-app", "daemon-Secret-0123456789"
CASES = ["postroom", "postroom-headers", "o365", "msgraph-sdk", "msgraph-sdk-plain", "postroom-move", "o365-move"]


# -- the server child ------------------------------------------------------------------------------


def serve(size: int) -> None:
    """Start both servers, fill the mailbox, print where they are, and serve until stdin closes."""
    import tempfile

    from tests.servers.graph import graph_server
    from tests.servers.oauth import CONFIDENTIAL_CLIENT, oauth_server

    with (
        tempfile.TemporaryDirectory(prefix="graph-bench-") as folder,
        oauth_server(Path(folder) / "as") as authority,
        graph_server(Path(folder) / "graph", authority.introspect) as graph,
    ):
        graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
        for raw in generate(size):
            graph.deliver(USER, raw)
        bundle = Path(folder) / "cas.pem"
        bundle.write_bytes(authority.ca_file.read_bytes() + graph.ca_file.read_bytes())
        print(json.dumps({"graph": graph.url, "authority": authority.authority, "ca": str(bundle)}), flush=True)
        sys.stdin.read()


# -- helpers ------------------------------------------------------------------------------------------


def _stats(where: dict[str, Any], *, reset: bool = False) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=where["ca"])
    request = urllib.request.Request(where["graph"] + "/_standin/stats", method="POST" if reset else "GET")  # noqa: S310
    with urllib.request.urlopen(request, context=context) as reply:  # noqa: S310 - the loopback stand-in
        found: dict[str, Any] = json.loads(reply.read())
    return found


def _token(where: dict[str, Any]) -> str:
    """An app-only Graph token from the test authorization server (client credentials)."""
    from urllib.parse import urlencode

    data = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        }
    ).encode()
    context = ssl.create_default_context(cafile=where["ca"])
    request = urllib.request.Request(where["authority"] + "/oauth2/v2.0/token", data=data)  # noqa: S310
    with urllib.request.urlopen(request, context=context) as reply:  # noqa: S310
        return str(json.loads(reply.read())["access_token"])


def _report(start: float, count: int, **extra: Any) -> None:
    report(start, count, **extra)


# -- the cases (each in its own process) ----------------------------------------------------------------


def case_postroom(where: dict[str, Any], *, bodies: bool = True) -> None:
    import postroom
    from postroom import OAuth2ClientCredentials, Outlook, Variable

    auth = OAuth2ClientCredentials(
        client_id=CLIENT, client_secret=Variable("S"), authority=where["authority"], ca_file=where["ca"]
    )
    config = Outlook(mailbox=USER, auth=auth, graph_url=where["graph"], ca_file=where["ca"])
    session = postroom.connect("bench", config, variables={"S": SECRET})
    count = 0
    start = time.perf_counter()
    for message in postroom.messages(session, order="oldest"):
        _ = (message.subject, str(message.from_ or ""), message.sent_date, message.attachment_names)
        if bodies:
            _ = message.text
        count += 1
    _report(start, count)
    postroom.disconnect("bench")


def case_postroom_move(where: dict[str, Any]) -> None:
    import postroom
    from postroom import OAuth2ClientCredentials, Outlook, Variable

    auth = OAuth2ClientCredentials(
        client_id=CLIENT, client_secret=Variable("S"), authority=where["authority"], ca_file=where["ca"]
    )
    config = Outlook(mailbox=USER, auth=auth, graph_url=where["graph"], ca_file=where["ca"])
    with postroom.connect("bench", config, variables={"S": SECRET}) as session:
        chosen = list(postroom.messages(session, order="oldest", limit=1000))
        postroom.create_folder(session, "Archive")
        before = _stats(where)
        start = time.perf_counter()
        results = postroom.move(session, chosen, "Archive")
        seconds = time.perf_counter() - start
        after = _stats(where)
        postroom.move(session, [r.new_key for r in results if r.new_key], "INBOX")  # put them back, not counted
    print(
        json.dumps(
            {
                "seconds": seconds,
                "messages": sum(r.ok for r in results),
                "move_requests": after["requests"] - before["requests"],
                "move_sub_requests": after["sub_requests"] - before["sub_requests"],
            }
        ),
        flush=True,
    )


def _o365_account(where: dict[str, Any]) -> Any:
    import requests
    from O365 import Account
    from O365.connection import MSGraphProtocol

    class StandIn(MSGraphProtocol):  # type: ignore[misc]
        _protocol_url = where["graph"] + "/"

    account = Account((CLIENT, SECRET), auth_flow_type="credentials", tenant_id="bench", protocol=StandIn())
    session = requests.Session()  # its own sign-in would go to login.microsoftonline.com
    session.headers["Authorization"] = f"Bearer {_token(where)}"
    session.verify = where["ca"]
    session.trust_env = False  # else REQUESTS_CA_BUNDLE (set on this machine) overrides verify (requests #3829)
    account.con.session = session
    account.con.verify_ssl = where["ca"]  # O365 passes verify= on every request
    return account


def case_o365(where: dict[str, Any]) -> None:
    account = _o365_account(where)
    inbox = account.mailbox(resource=USER).inbox_folder()
    count = 0
    start = time.perf_counter()
    for message in inbox.get_messages(limit=None, batch=999, download_attachments=True):
        _ = (message.subject, str(message.sender), message.sent, [a.name for a in message.attachments])
        _ = message.get_body_text()
        count += 1
    _report(start, count)


def case_o365_move(where: dict[str, Any]) -> None:
    account = _o365_account(where)
    mailbox = account.mailbox(resource=USER)
    inbox = mailbox.inbox_folder()
    archive = mailbox.archive_folder()
    chosen = list(inbox.get_messages(limit=1000, batch=999))
    before = _stats(where)
    start = time.perf_counter()
    moved = sum(bool(message.move(archive)) for message in chosen)
    seconds = time.perf_counter() - start
    after = _stats(where)
    for message in archive.get_messages(limit=None, batch=999):
        message.move(inbox)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "messages": moved,
                "move_requests": after["requests"] - before["requests"],
                "move_sub_requests": after["sub_requests"] - before["sub_requests"],
            }
        ),
        flush=True,
    )


def case_msgraph_sdk(where: dict[str, Any], *, plain: bool = False) -> None:
    import httpx
    from azure.core.credentials import AccessToken
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import (
        MessagesRequestBuilder,
    )
    from msgraph_core import GraphClientFactory

    token = _token(where)

    class Fixed:
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken(token, int(time.time()) + 3600)

        async def close(self) -> None:
            return None

    async def loop() -> None:
        provider = AzureIdentityAuthenticationProvider(
            Fixed(), scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["localhost"]
        )
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=where["ca"]))
        )
        adapter = GraphRequestAdapter(provider, http)
        adapter.base_url = where["graph"] + "/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        messages = client.users.by_user_id(USER).mail_folders.by_mail_folder_id("inbox").messages
        if plain:  # the SDK's defaults: every field, Graph's page of 10, attachments asked for per message
            count = 0
            start = time.perf_counter()
            page = await messages.get()
            while page is not None:
                for message in page.value or []:
                    names = []
                    if message.has_attachments and message.id:
                        found = await messages.by_message_id(message.id).attachments.get()
                        names = [a.name for a in (found.value if found else None) or []]
                    _ = (message.subject, message.from_, message.sent_date_time, names)
                    _ = message.body.content if message.body else ""
                    count += 1
                if not page.odata_next_link:
                    break
                page = await messages.with_url(page.odata_next_link).get()
            _report(start, count)
            return
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            select=["id", "subject", "from", "sentDateTime", "body"],
            expand=["attachments($select=id,name)"],
            top=1000,
            orderby=["receivedDateTime asc"],
            filter="receivedDateTime ge 1900-01-01T00:00:00Z",
        )
        config = MessagesRequestBuilder.MessagesRequestBuilderGetRequestConfiguration(query_parameters=query)
        count = 0
        start = time.perf_counter()
        page = await messages.get(request_configuration=config)
        while page is not None:
            for message in page.value or []:
                sender = message.from_.email_address.address if message.from_ and message.from_.email_address else ""
                _ = (message.subject, sender, message.sent_date_time, [a.name for a in message.attachments or []])
                _ = message.body.content if message.body else ""
                count += 1
            if not page.odata_next_link:
                break
            page = await messages.with_url(page.odata_next_link).get()
        _report(start, count)

    asyncio.run(loop())


_CASES = {
    "postroom": case_postroom,
    "postroom-headers": lambda where: case_postroom(where, bodies=False),
    "o365": case_o365,
    "msgraph-sdk": case_msgraph_sdk,
    "msgraph-sdk-plain": lambda where: case_msgraph_sdk(where, plain=True),
    "postroom-move": case_postroom_move,
    "o365-move": case_o365_move,
}


# -- the runner ---------------------------------------------------------------------------------------


def run_case(name: str, where: dict[str, Any]) -> dict[str, Any]:
    before = _stats(where, reset=True)
    result = run_child("bench.graph", name, where)
    after = _stats(where)
    if "failed" not in result:
        result.update(
            requests=after["requests"],
            sub_requests=after["sub_requests"],
            bytes=after["bytes_out"],
            server_cpu=after["cpu"] - before["cpu"],
            peak_in_flight=after["peak_in_flight"],
            throttled=after["throttled"],
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    with served("bench.graph", args.size) as where:
        print(f"N = {args.size}: stand-in filled in {time.perf_counter() - started:.1f} s", flush=True)
        rows = _run_cases(args.cases, args.runs, where)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _run_cases(cases: list[str], repeat: int, where: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for case in cases:
        runs = [run_case(case, where) for _ in range(repeat)]
        good = [r for r in runs if "failed" not in r]
        if not good:
            rows[case] = {"failed": runs[0]["failed"]}
            print(f"  {case:17} failed: {runs[0]['failed']}", flush=True)
            continue
        best = min(good, key=lambda r: r["seconds"])
        median = statistics.median(r["seconds"] for r in good)
        per_k = 1000 / max(best["messages"], 1)
        rows[case] = {**best, "seconds_median": median}
        moves = f"  moves: {best['move_requests']} requests" if "move_requests" in best else ""
        print(
            f"  {case:17} {median:7.2f} s  {best['requests'] * per_k:7.1f} req/1k "
            f"(+{best['sub_requests'] * per_k:6.1f} in $batch)  {best['bytes'] * per_k / 1e6:6.2f} MB/1k  "
            f"server cpu {best['server_cpu']:6.2f} s  "
            f"client cpu {best['cpu']:6.2f} s  peak {best['peak_mb']:5.0f} MB  in flight {best['peak_in_flight']}"
            f"{moves}",
            flush=True,
        )
    for peer in ("o365", "msgraph-sdk", "msgraph-sdk-plain"):
        ours, theirs = rows.get("postroom", {}), rows.get(peer, {})
        if "seconds_median" in ours and "seconds_median" in theirs:
            print(
                f"  postroom vs {peer:11}: {theirs['seconds_median'] / ours['seconds_median']:5.2f}x faster, "
                f"{ours['requests'] / max(theirs['requests'], 1):5.3f} of its requests",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["case"]:
        _CASES[sys.argv[2]](json.loads(sys.argv[3]))
    else:
        main()
