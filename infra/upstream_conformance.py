#!/usr/bin/env python3
"""wafleet against the upstream REST API's own document (GOWA, `gowa-openapi.yaml`).

Starts `wafleet serve --demo` (every role in one process, SQLite in a temporary directory,
WhatsApp simulated), links a device through the upstream device routes and the simulated phone,
then calls each operation of the document the way the document describes it: its path, its
parameters and bodies taken from the document's examples, HTTP Basic with the API token as
password (the document's `basicAuth`). Every answer must have a status the document lists for the
operation and, where the document gives a JSON schema for that status, match it. Each call also
says which status it expects, so a call that fails in a documented way is still caught.

Every operation of the document is in exactly one of three lists below: CALLS (tested here),
OUT_OF_SCOPE (groups, newsletters and Chatwoot: wafleet is about personal chats) or NOT_YET
(personal-chat operations wafleet does not answer yet, each with what is missing). An operation in
none of them, or in two, fails the run, as does any mismatch. NOT_YET is printed at the end so the
gap stays visible; README.md's table of the upstream operations says the same.

A status the document does not list is a mismatch unless DEVIATIONS names it with its reason.
Schemas are OpenAPI 3.0: `nullable: true` admits null, and so does a property whose documented
example is null (the document's way of saying `results` is null on errors).

Usage: upstream_conformance.py WAFLEET_BINARY OPENAPI_YAML
       upstream_conformance.py --table OPENAPI_YAML   (README's table, in Markdown)
Run by infra/upstream-test (which builds the binary and provides PyYAML, requests and
jsonschema_rs); WAFLEET_UPSTREAM_KEEP=FILE keeps the server's log.
"""

import base64
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
import struct

import jsonschema_rs
import requests
import yaml

METHODS = ("get", "post", "put", "patch", "delete")

# Whole groups of the document that are not about personal chats.
OUT_OF_SCOPE_TAGS = {
    "group": "groups are not personal chats: wafleet never stores or sends group messages",
    "newsletter": "newsletters (channels) are not personal chats",
    "chatwoot": "Chatwoot is another product's inbox; wafleet has its own chat viewer and webhooks",
}
OUT_OF_SCOPE = {
    ("GET", "/user/my/groups"): "groups are not personal chats",
    ("GET", "/user/my/newsletters"): "newsletters (channels) are not personal chats",
}

# Personal-chat operations wafleet does not answer yet, and what each needs.
NOT_YET = {
}

# Statuses wafleet answers that the document does not list for the operation, each for a reason a
# client can rely on. The body must still be the upstream's error envelope (`ErrorBadRequest`'s
# shape); anything else undocumented is a mismatch.
DEVIATIONS = {
    ("GET", "/app/login", 400): "`400` `ALREADY_LOGGED_IN` for a linked, online device, whose session is kept (the document lists only `500`)",
    ("GET", "/app/login-with-code", 400): "`400` `ALREADY_LOGGED_IN` for a linked, online device, whose session is kept (the document lists only `500`)",
    ("GET", "/app/reconnect", 409): "`409` for a device that is logged out or not linked: it must be linked again",
    ("GET", "/user/business-profile", 404): "`404` when the number is no business account (or has no WhatsApp)",
    ("GET", "/user/avatar", 404): "`404` when the number shows no profile picture (none set, hidden from this account, or no account)",
    ("POST", "/app/passkey/confirm", 400): "`400`: no passkey request is ever pending (neither link carries them)",
}

# What a client should know of an operation wafleet answers (README's table).
NOTES = {
    ("GET", "/app/passkey"): "always `none`: neither link carries WhatsApp's passkey requests",
    ("POST", "/app/passkey/response"): "`400`: no passkey request is ever pending",
    ("DELETE", "/devices/{device_id}"): "closes the session without logging out of WhatsApp: log out first",
    ("PATCH", "/devices/{device_id}/webhook"): "`webhook_insecure_skip_verify: true` is refused: TLS is always verified",
    ("GET", "/user/my/contacts"): "the phone's address book and everyone the device has a chat with",
    ("GET", "/user/info"): "through the device's live session; `400` for a number without WhatsApp",
    ("GET", "/user/my/privacy"): "through the device's live session",
    ("GET", "/user/avatar"): "through the device's live session; `is_community=true` is refused (`400`)",
    ("GET", "/user/business-profile"): "through the device's live session; `profile_options` holds the first website and the description",
    ("POST", "/user/avatar"): "any image wafleet reads; the middle square becomes a JPEG of at most 640 px",
    ("POST", "/send/image"): "`image` uploaded, or `image_url` fetched (public addresses only, 30 s, `MAX_MEDIA_BYTES`); sent as JPEG",
    ("POST", "/send/video"): "MP4 as given (no transcoding: `compress`, `hd` and `gif_playback` are not applied); `video_url` fetched as `image_url` is",
    ("POST", "/send/audio"): "OGG Opus, MP3, M4A, AAC or AMR as given; `ptt` is not applied (no transcoding to a voice note)",
    ("POST", "/send/file"): "any file, under its name and type (the type read from the file, else its name, when the client gives none)",
    ("POST", "/send/sticker"): "any picture wafleet reads, sent as a 512 px WebP; an animation keeps its first frame",
    ("POST", "/user/pushname"): "through the device's live session, as WhatsApp Web sets it; at most 25 characters",
    ("POST", "/send/presence"): "through the device's live session; `400` until the account has a push name (WhatsApp takes presence only with one)",
    ("POST", "/message/{message_id}/forward"): "a text, or a file wafleet keeps, received or sent, on the paced send path, marked \"Forwarded\"; `force_reupload` and `duration` are not applied (a kept file is always uploaded again)",
    ("POST", "/send/contact"): "a vCard with the name and number, as WhatsApp's apps send them",
    ("POST", "/send/link"): "a text with the caption and the link; no preview is attached (wafleet does not fetch the page)",
    ("POST", "/send/location"): "`latitude` and `longitude` as strings or numbers",
    ("POST", "/send/poll"): "2 to 12 different options; votes are not collected yet",
    ("GET", "/chats"): "personal chats only; `archived` and `ephemeral_expiration` as set through wafleet",
    ("POST", "/message/{message_id}/star"): "a message the device stored, received or sent; the account's synced app state, as the phone stars",
    ("POST", "/message/{message_id}/unstar"): "as `star`",
    ("POST", "/message/{message_id}/delete"): "for the account alone (its synced app state, as the phone's \"Delete for me\"); `phone` may be left out; wafleet's record of the chat keeps the message",
    ("POST", "/chat/{chat_jid}/pin"): "the account's synced app state, as the phone pins; `GET /chats` does not reorder pinned chats",
    ("POST", "/chat/{chat_jid}/archive"): "the account's synced app state, as the phone archives; `GET /chats?archived=true` lists the chats archived through wafleet",
    ("POST", "/call/reject"): "through the device's live session, naming `payload.call_id` and `payload.from` of the `call.offer` webhook; WhatsApp does not answer a rejection, so one of a call that has ended is answered `200` too",
    ("POST", "/chat/{chat_jid}/disappearing"): "a message in the chat, as the phone sets it; wafleet's own sends do not carry the timer, and its record keeps every message",
    ("POST", "/message/{message_id}/read"): "a received message the device stored; the device must be online; also clears the chat's unread count",
    ("POST", "/send/chat-presence"): "through the device's live session; the device must be online",
    ("POST", "/message/{message_id}/reaction"): "a message the device stored, received or sent; at once, not at the device's pace; `results.message_id` is the reaction's id",
    ("POST", "/message/{message_id}/revoke"): "one of the account's own messages the device stored; at once; it stays in wafleet's record of the chat",
    ("POST", "/message/{message_id}/update"): "one of the account's own messages; at once; wafleet's record keeps the text it was sent with",
    ("GET", "/chat/{chat_jid}/messages"): "reactions are not stored yet, so empty; `url` is where wafleet serves a received file once kept",
    ("GET", "/message/{message_id}/download"): "received files are fetched and kept when they arrive; `file_url` serves the file (`409` while it is still being fetched)",
}


def log(message):
    print(f"\033[1m[upstream-conformance]\033[0m {message}", file=sys.stderr, flush=True)


class Document:
    """The OpenAPI document: its operations, and their response schemas as JSON Schema."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.operations = {}
        for route, item in self.doc["paths"].items():
            for method in METHODS:
                if method in item:
                    self.operations[(method.upper(), route)] = item[method]

    def resolve(self, node):
        """`node` with its `$ref` (`#/components/...`) followed."""
        while isinstance(node, dict) and "$ref" in node:
            target = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def schema(self, node, depth=0):
        """`node` as JSON Schema (draft 4), references inlined."""
        if depth > 40:
            return {}
        node = self.resolve(node)
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key in ("example", "examples", "nullable", "description", "format", "readOnly", "writeOnly"):
                continue
            if key == "properties":
                out[key] = {name: self.schema(prop, depth + 1) for name, prop in value.items()}
            elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
                out[key] = self.schema(value, depth + 1)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [self.schema(v, depth + 1) for v in value]
            else:
                out[key] = value
        nullable = node.get("nullable") is True or ("example" in node and node["example"] is None)
        if nullable and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out

    def check(self, key, response):
        """Mismatches of `response` with what the document says `key` answers."""
        responses = self.operations[key]["responses"]
        status = str(response.status_code)
        documented = responses.get(status) or responses.get("default")
        if documented is None and (*key, response.status_code) in DEVIATIONS:
            documented = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBadRequest"}}}}
        if documented is None:
            return [f"status {status} is not documented (documented: {', '.join(responses)}): {response.text[:300]}"]
        documented = self.resolve(documented)
        content = documented.get("content") or {}
        json_schema = (content.get("application/json") or {}).get("schema")
        if json_schema is None:
            return []
        if not response.headers.get("content-type", "").startswith("application/json"):
            return [f"status {status} is documented as JSON; got {response.headers.get('content-type')!r}"]
        try:
            body = response.json()
        except ValueError:
            return [f"status {status}: the body is not JSON: {response.text[:300]}"]
        validator = jsonschema_rs.Draft4Validator(self.schema(json_schema))
        return [f"status {status}: {error.message} at /{'/'.join(map(str, error.instance_path))}"
                for error in validator.iter_errors(body)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(width=4, height=3):
    """A small valid PNG."""
    raw = b"".join(b"\x00" + bytes([200, 80, 40] * width) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class Wafleet:
    """A demo server and a user of it: a browser session for the dashboard, a token for the API."""

    def __init__(self, binary):
        self.work = tempfile.mkdtemp(prefix="wafleet-upstream-")
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        # Loopback is allowed so that `image_url` can be fetched from the run's own web server.
        env = dict(os.environ, DATA_DIR=f"{self.work}/data", PORT=str(port), HOST="127.0.0.1",
                   WEBHOOK_MAX_ATTEMPTS="1", WEBHOOK_ALLOWED_HOSTS="127.0.0.1", LOG_FORMAT="text", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.log_path = f"{self.work}/server.log"
        self.server = subprocess.Popen([binary, "serve", "--demo"], env=env,
                                       stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            if self.server.poll() is not None:
                raise SystemExit(f"wafleet exited:\n{open(self.log_path).read()}")
            try:
                if requests.get(f"{self.base}/ready", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("wafleet did not become ready in 60 s")
        self.browser = requests.Session()
        self.browser.post(f"{self.base}/api/register",
                          json={"email": "upstream@example.com", "password": "correct horse battery"}).raise_for_status()
        page = self.browser.get(f"{self.base}/dashboard").text
        self.csrf = re.search(r'name="csrf-token" content="([^"]*)"', page).group(1)
        made = self.browser.post(f"{self.base}/api/tokens", json={"name": "upstream"},
                                 headers={"X-CSRF-Token": self.csrf})
        made.raise_for_status()
        self.token = made.json()["results"]["token"]
        # The upstream's clients authenticate with HTTP Basic; the token is the password.
        self.api = requests.Session()
        self.api.auth = ("wafleet", self.token)

    def serve_file(self, name, content):
        """Serves `content` at the returned URL from a web server of the run's own."""
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    def url(self, path):
        return self.base + path

    def scan(self, device_id, phone):
        """The simulated phone `phone` scans the device's QR code."""
        answer = self.browser.post(self.url(f"/api/demo/devices/{device_id}/scan"), json={"phone": phone},
                                   headers={"X-CSRF-Token": self.csrf})
        answer.raise_for_status()

    def stop(self):
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()
        keep = os.environ.get("WAFLEET_UPSTREAM_KEEP")
        if keep:
            shutil.copy(self.log_path, keep)
        shutil.rmtree(self.work, ignore_errors=True)


def wait_for(what, probe, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"gave up waiting for {what}")


def run_calls(doc, app):
    """Calls the operations in order (later calls use what earlier ones made). Yields
    (operation, what the call does, expected status, response)."""
    api, url = app.api, app.url
    device = "shop-one"
    header = {"X-Device-Id": device}

    yield ("GET", "/health"), "public probe", 200, requests.get(url("/health"))
    yield ("POST", "/devices"), "add a device slot", 200, api.post(url("/devices"), json={
        "device_id": device, "webhook_url": "https://device-webhook.example.com/handler",
        "webhook_secret": "super-secret-key", "webhook_events": "message,message.ack",
        "webhook_insecure_skip_verify": False})
    yield ("GET", "/devices"), "list devices", 200, api.get(url("/devices"))
    yield ("GET", "/devices/{device_id}"), "one device", 200, api.get(url(f"/devices/{device}"))
    yield ("GET", "/devices/{device_id}/status"), "status before linking", 200, api.get(url(f"/devices/{device}/status"))
    yield ("GET", "/devices/{device_id}/webhook"), "its webhook", 200, api.get(url(f"/devices/{device}/webhook"))
    yield ("PATCH", "/devices/{device_id}/webhook"), "change its webhook", 200, api.patch(
        url(f"/devices/{device}/webhook"), json={"webhook_url": "https://hooks.example.com/wa",
                                                 "webhook_events": "message"})
    yield ("GET", "/devices/{device_id}/login"), "start QR login", 200, api.get(url(f"/devices/{device}/login"))
    numeric = wait_for("the device's id", lambda: next(
        (d["id"] for d in app.browser.get(url("/api/devices")).json()["results"] if d["name"] == device), None))
    wait_for("a QR code", lambda: app.browser.get(url(f"/api/devices/{numeric}/qr")).ok)
    yield ("GET", "/app/login"), "QR login again while pairing", 200, api.get(url("/app/login"), headers=header)
    wait_for("a QR code", lambda: app.browser.get(url(f"/api/devices/{numeric}/qr")).ok)
    app.scan(numeric, "+60123450001")
    wait_for("the device online", lambda: api.get(url(f"/devices/{device}/status")).json()["results"].get("is_connected"))
    yield ("GET", "/app/status"), "connection status", 200, api.get(url("/app/status"), headers=header)
    yield ("GET", "/app/info"), "the server's version", 200, api.get(url("/app/info"))
    yield ("GET", "/app/devices"), "the account's devices", 200, api.get(url("/app/devices"), headers=header)
    yield ("GET", "/app/login"), "QR login while logged in", 400, api.get(url("/app/login"), headers=header)
    yield ("GET", "/app/login-with-code"), "code login while logged in", 400, api.get(
        url("/app/login-with-code"), params={"phone": "628912344551"}, headers=header)
    yield ("GET", "/user/check"), "a number on WhatsApp", 200, api.get(
        url("/user/check"), params={"phone": "60191000001"}, headers=header)
    yield ("GET", "/user/check"), "the JID form", 200, api.get(
        url("/user/check"), params={"phone": "60191000002@s.whatsapp.net"}, headers=header)
    yield ("GET", "/user/check"), "no phone", 400, api.get(url("/user/check"), headers=header)
    info = api.get(url("/user/info"), params={"phone": "60191000001"}, headers=header)
    yield ("GET", "/user/info"), "a shop's profile", 200, info
    if info.ok and info.json()["results"]["verified_name"] != "Kedai Aisyah":
        raise SystemExit(f"/user/info did not show the demo shop's verified name: {info.text}")
    yield ("GET", "/user/info"), "the JID form", 200, api.get(
        url("/user/info"), params={"phone": "60191000002@s.whatsapp.net"}, headers=header)
    yield ("GET", "/user/info"), "a number without WhatsApp", 400, api.get(
        url("/user/info"), params={"phone": "60129990000"}, headers=header)
    yield ("GET", "/user/info"), "no phone", 400, api.get(url("/user/info"), headers=header)
    avatar = api.get(url("/user/avatar"), params={"phone": "60191000001", "is_preview": "true"}, headers=header)
    yield ("GET", "/user/avatar"), "a shop's picture preview", 200, avatar
    if avatar.ok and requests.get(avatar.json()["results"]["url"]).content[:2] != b"\xff\xd8":
        raise SystemExit(f"/user/avatar's url does not serve a JPEG: {avatar.text}")
    yield ("GET", "/user/avatar"), "the full picture, JID form", 200, api.get(
        url("/user/avatar"), params={"phone": "60191000001@s.whatsapp.net", "is_preview": "false"}, headers=header)
    yield ("GET", "/user/avatar"), "a number without a picture", 404, api.get(
        url("/user/avatar"), params={"phone": "60191000002"}, headers=header)
    business = api.get(url("/user/business-profile"), params={"phone": "60191000001"}, headers=header)
    yield ("GET", "/user/business-profile"), "a shop", 200, business
    if business.ok and business.json()["results"]["business_hours"][0]["open_time"] != "09:00":
        raise SystemExit(f"/user/business-profile did not show the demo shop's hours: {business.text}")
    yield ("GET", "/user/business-profile"), "no business", 404, api.get(
        url("/user/business-profile"), params={"phone": "60191000002@s.whatsapp.net"}, headers=header)
    yield ("GET", "/user/business-profile"), "no phone", 400, api.get(url("/user/business-profile"), headers=header)
    yield ("POST", "/user/avatar"), "change the account's picture", 200, api.post(
        url("/user/avatar"), headers=header, files={"avatar": ("me.png", io.BytesIO(png()), "image/png")})
    own = api.get(url("/user/avatar"), params={"phone": "60123450001"}, headers=header)
    if own.ok and requests.get(own.json()["results"]["url"]).content[:2] != b"\xff\xd8":
        raise SystemExit(f"the account's new picture is not served as a JPEG: {own.text}")
    yield ("GET", "/user/avatar"), "the account's new picture", 200, own
    yield ("POST", "/user/avatar"), "not an image", 400, api.post(
        url("/user/avatar"), headers=header, files={"avatar": ("me.png", io.BytesIO(b"not a picture"), "image/png")})
    yield ("GET", "/user/avatar"), "a community", 400, api.get(
        url("/user/avatar"), params={"phone": "60191000001", "is_community": "true"}, headers=header)
    yield ("POST", "/send/message"), "a text", 200, api.post(url("/send/message"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "message": "selamat malam"})
    yield ("POST", "/send/message"), "no message", 400, api.post(url("/send/message"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/send/image"), "an image, multipart with Basic auth", 200, api.post(
        url("/send/image"), headers=header, data={"phone": "60191000001@s.whatsapp.net", "caption": "selamat malam"},
        files={"image": ("photo.png", io.BytesIO(png()), "image/png")})
    yield ("POST", "/send/image"), "an image by URL", 200, api.post(
        url("/send/image"), headers=header, files={
            "phone": (None, "60191000001@s.whatsapp.net"), "caption": (None, "selamat malam"),
            "image_url": (None, app.serve_file("image.png", png()))})
    video = b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 40
    yield ("POST", "/send/video"), "a video, multipart with Basic auth", 200, api.post(
        url("/send/video"), headers=header, data={"phone": "60191000001@s.whatsapp.net", "caption": "ini contoh caption video"},
        files={"video": ("tour.mp4", io.BytesIO(video), "video/mp4")})
    yield ("POST", "/send/video"), "not a video", 400, api.post(
        url("/send/video"), headers=header, data={"phone": "60191000001@s.whatsapp.net"},
        files={"video": ("tour.mp4", io.BytesIO(b"not a video at all"), "video/mp4")})
    yield ("POST", "/send/audio"), "an audio file", 200, api.post(
        url("/send/audio"), headers=header, data={"phone": "60191000001@s.whatsapp.net"},
        files={"audio": ("hello.ogg", io.BytesIO(b"OggS" + bytes(2000)), "audio/ogg")})
    yield ("POST", "/send/file"), "a document", 200, api.post(
        url("/send/file"), headers=header, data={"phone": "60191000001@s.whatsapp.net", "caption": "selamat malam"},
        files={"file": ("prices.pdf", io.BytesIO(b"%PDF-1.4\n" + bytes(3000)), "application/pdf")})
    yield ("POST", "/send/file"), "a document by URL", 200, api.post(
        url("/send/file"), headers=header, files={
            "phone": (None, "60191000001@s.whatsapp.net"),
            "file_url": (None, app.serve_file("document.pdf", b"%PDF-1.4\n" + bytes(3000)))})
    yield ("POST", "/send/file"), "no file", 400, api.post(
        url("/send/file"), headers=header, data={"phone": "60191000001@s.whatsapp.net"}, files={"caption": (None, "x")})
    yield ("POST", "/send/sticker"), "a sticker", 200, api.post(
        url("/send/sticker"), headers=header, data={"phone": "60191000001@s.whatsapp.net"},
        files={"sticker": ("smile.png", io.BytesIO(png()), "image/png")})
    yield ("POST", "/send/contact"), "a contact card", 200, api.post(url("/send/contact"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "contact_name": "Aldino Kemal", "contact_phone": "6289685024992"})
    yield ("POST", "/send/contact"), "no number on the card", 400, api.post(url("/send/contact"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "contact_name": "Aldino Kemal"})
    yield ("POST", "/send/location"), "a location", 200, api.post(url("/send/location"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "latitude": "-7.797068", "longitude": "110.370529"})
    yield ("POST", "/send/location"), "off the map", 400, api.post(url("/send/location"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "latitude": "97.5", "longitude": "110.370529"})
    yield ("POST", "/send/link"), "a link", 200, api.post(url("/send/link"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "link": "https://google.com", "caption": "Halo ini contoh caption"})
    yield ("POST", "/send/link"), "not a link", 400, api.post(url("/send/link"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "link": "google"})
    yield ("POST", "/send/poll"), "a poll", 200, api.post(url("/send/poll"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "question": "Siapa Nama Avatar The Last Air Bender?",
        "options": ["Zuko", "Aang", "Katara"], "max_answer": 2})
    yield ("POST", "/send/poll"), "one option", 400, api.post(url("/send/poll"), headers=header, json={
        "phone": "60191000001@s.whatsapp.net", "question": "Yes?", "options": ["Yes"], "max_answer": 1})
    wait_for("the demo contacts' chats", lambda: len(api.get(url("/chats"), headers=header).json()["results"]["data"]) >= 3)
    yield ("GET", "/chats"), "the device's chats", 200, api.get(url("/chats"), headers=header, params={"limit": 25, "offset": 0})
    yield ("GET", "/chats"), "searched", 200, api.get(url("/chats"), headers=header, params={"search": "Ben"})
    yield ("GET", "/chat/{chat_jid}/messages"), "a chat's messages", 200, api.get(
        url("/chat/60191000001@s.whatsapp.net/messages"), headers=header, params={"limit": 50})
    yield ("GET", "/chat/{chat_jid}/messages"), "percent-encoded JID", 200, api.get(
        url("/chat/60191000002%40s.whatsapp.net/messages"), headers=header)
    messages = api.get(url("/chat/60191000001@s.whatsapp.net/messages"), headers=header).json()["results"]["data"]
    received = next(m["id"] for m in messages if not m["is_from_me"])
    yield ("POST", "/message/{message_id}/read"), "mark a received message read", 200, api.post(
        url(f"/message/{received}/read"), headers=header, json={"phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/reaction"), "react to a received message", 200, api.post(
        url(f"/message/{received}/reaction"), headers=header, json={"phone": "60191000001@s.whatsapp.net", "emoji": "🙏"})
    mine = wait_for("the text sent earlier, stored as sent", lambda: next(
        (m["id"] for m in api.get(url("/chat/60191000001@s.whatsapp.net/messages"), headers=header).json()["results"]["data"]
         if m["is_from_me"] and m["content"] == "selamat malam"), None), timeout=120)
    yield ("POST", "/message/{message_id}/update"), "edit an own message", 200, api.post(
        url(f"/message/{mine}/update"), headers=header, json={"phone": "60191000001@s.whatsapp.net", "message": "Hello World"})
    yield ("POST", "/message/{message_id}/update"), "no new text", 400, api.post(
        url(f"/message/{mine}/update"), headers=header, json={"phone": "60191000001@s.whatsapp.net", "message": ""})
    yield ("POST", "/message/{message_id}/revoke"), "delete an own message for everyone", 200, api.post(
        url(f"/message/{mine}/revoke"), headers=header, json={"phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/revoke"), "someone else's message", 400, api.post(
        url(f"/message/{received}/revoke"), headers=header, json={"phone": "60191000001@s.whatsapp.net"})
    for action in ("star", "unstar"):
        yield ("POST", f"/message/{{message_id}}/{action}"), f"{action} a received message", 200, api.post(
            url(f"/message/{received}/{action}"), headers=header, json={"phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/star"), "no phone", 400, api.post(
        url(f"/message/{received}/star"), headers=header, json={})
    yield ("POST", "/message/{message_id}/delete"), "delete an own message for me", 200, api.post(
        url(f"/message/{mine}/delete"), headers=header, json={"phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/delete"), "named with another chat", 400, api.post(
        url(f"/message/{received}/delete"), headers=header, json={"phone": "60191000002"})
    for pinned in (True, False):
        yield ("POST", "/chat/{chat_jid}/pin"), f"pinned: {pinned}", 200, api.post(
            url("/chat/60191000001@s.whatsapp.net/pin"), headers=header, json={"pinned": pinned})
    yield ("POST", "/chat/{chat_jid}/pin"), "a chat the device does not have", 404, api.post(
        url("/chat/60199999999@s.whatsapp.net/pin"), headers=header, json={"pinned": True})
    yield ("POST", "/chat/{chat_jid}/pin"), "no `pinned`", 400, api.post(
        url("/chat/60191000001@s.whatsapp.net/pin"), headers=header, json={})
    yield ("POST", "/chat/{chat_jid}/archive"), "archive", 200, api.post(
        url("/chat/60191000001%40s.whatsapp.net/archive"), headers=header, json={"archived": True})
    archived = api.get(url("/chats"), headers=header, params={"archived": "true"})
    yield ("GET", "/chats"), "archived only", 200, archived
    if [c["jid"] for c in archived.json()["results"]["data"]] != ["60191000001@s.whatsapp.net"]:
        raise SystemExit(f"/chats?archived=true does not list exactly the archived chat: {archived.text}")
    yield ("POST", "/chat/{chat_jid}/archive"), "bring back", 200, api.post(
        url("/chat/60191000001@s.whatsapp.net/archive"), headers=header, json={"archived": False})
    yield ("POST", "/chat/{chat_jid}/archive"), "a chat the device does not have", 404, api.post(
        url("/chat/60199999999@s.whatsapp.net/archive"), headers=header, json={"archived": True})
    for seconds in (86400, 0):
        yield ("POST", "/chat/{chat_jid}/disappearing"), f"timer {seconds}", 200, api.post(
            url("/chat/60191000001@s.whatsapp.net/disappearing"), headers=header, json={"timer_seconds": seconds})
    yield ("POST", "/chat/{chat_jid}/disappearing"), "a timer WhatsApp does not offer", 400, api.post(
        url("/chat/60191000001@s.whatsapp.net/disappearing"), headers=header, json={"timer_seconds": 3600})
    yield ("POST", "/call/reject"), "decline a call", 200, api.post(url("/call/reject"), headers=header, json={
        "caller_jid": "60191000001@s.whatsapp.net", "call_id": "ABC123DEF456"})
    yield ("POST", "/call/reject"), "no call_id", 400, api.post(url("/call/reject"), headers=header, json={
        "caller_jid": "60191000001@s.whatsapp.net"})
    yield ("POST", "/chat/{chat_jid}/disappearing"), "a group", 400, api.post(
        url("/chat/120363025982934543@g.us/disappearing"), headers=header, json={"timer_seconds": 86400})
    photo = wait_for("the demo contact's photo, kept", lambda: next(
        (m["id"] for m in api.get(url("/chat/60191000001@s.whatsapp.net/messages"), headers=header).json()["results"]["data"]
         if m["media_type"] == "image" and m["url"]), None))
    download = api.get(url(f"/message/{photo}/download"), headers=header, params={"phone": "60191000001@s.whatsapp.net"})
    yield ("GET", "/message/{message_id}/download"), "a received photo", 200, download
    if download.ok and api.get(download.json()["results"]["file_url"]).content[:2] != b"\xff\xd8":
        raise SystemExit(f"/message/{{id}}/download's file_url does not serve the photo: {download.text}")
    yield ("POST", "/message/{message_id}/forward"), "forward a received photo", 200, api.post(
        url(f"/message/{photo}/forward"), headers=header, json={"phone": "60191000002@s.whatsapp.net"})
    text = next(m["id"] for m in messages if not m["is_from_me"] and not m["media_type"])
    yield ("POST", "/message/{message_id}/forward"), "forward a received text", 200, api.post(
        url(f"/message/{text}/forward"), headers=header, json={"phone": "6289685024051@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/forward"), "nowhere to forward it", 400, api.post(
        url(f"/message/{text}/forward"), headers=header, json={})
    yield ("GET", "/message/{message_id}/download"), "a message without a file", 404, api.get(
        url(f"/message/{text}/download"), headers=header, params={"phone": "60191000001@s.whatsapp.net"})
    yield ("POST", "/message/{message_id}/read"), "named with another chat", 400, api.post(
        url(f"/message/{received}/read"), headers=header, json={"phone": "60191000002"})
    yield ("POST", "/send/presence"), "a type that is not one", 400, api.post(
        url("/send/presence"), headers=header, json={"type": "busy"})
    yield ("POST", "/send/presence"), "before the account has a push name", 400, api.post(
        url("/send/presence"), headers=header, json={"type": "available"})
    yield ("POST", "/user/pushname"), "set the push name", 200, api.post(
        url("/user/pushname"), headers=header, json={"push_name": "John Doe"})
    yield ("POST", "/user/pushname"), "a blank name", 400, api.post(
        url("/user/pushname"), headers=header, json={"push_name": " "})
    for kind in ("available", "unavailable"):
        yield ("POST", "/send/presence"), f"show {kind}", 200, api.post(
            url("/send/presence"), headers=header, json={"type": kind})
    for action in ("start", "stop"):
        yield ("POST", "/send/chat-presence"), f"typing {action}", 200, api.post(
            url("/send/chat-presence"), headers=header, json={"phone": "6289685024051@s.whatsapp.net", "action": action})
    yield ("POST", "/send/chat-presence"), "an unknown action", 400, api.post(
        url("/send/chat-presence"), headers=header, json={"phone": "6289685024051", "action": "dance"})
    yield ("GET", "/user/my/contacts"), "the account's contacts", 200, api.get(url("/user/my/contacts"), headers=header)
    privacy = api.get(url("/user/my/privacy"), headers=header)
    yield ("GET", "/user/my/privacy"), "the account's privacy settings", 200, privacy
    if privacy.ok and privacy.json()["results"]["read_receipts"] != "all":
        raise SystemExit(f"/user/my/privacy did not show WhatsApp's default for read receipts: {privacy.text}")
    yield ("GET", "/app/passkey"), "no passkey request pending", 200, api.get(url("/app/passkey"), headers=header)
    yield ("POST", "/app/passkey/response"), "an assertion with nothing pending", 400, api.post(
        url("/app/passkey/response"), headers=header, json={
            "id": "Y3JlZA", "rawId": "Y3JlZA", "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"}})
    yield ("POST", "/app/passkey/confirm"), "a confirmation with nothing pending", 400, api.post(
        url("/app/passkey/confirm"), headers=header)
    yield ("GET", "/app/reconnect"), "reconnect", 200, api.get(url("/app/reconnect"), headers=header)
    yield ("POST", "/devices/{device_id}/reconnect"), "reconnect by path", 200, api.post(url(f"/devices/{device}/reconnect"))
    wait_for("the device online", lambda: api.get(url(f"/devices/{device}/status")).json()["results"].get("is_connected"))
    yield ("GET", "/app/logout"), "log out", 200, api.get(url("/app/logout"), headers=header)
    yield ("GET", "/app/reconnect"), "reconnect when logged out", 409, api.get(url("/app/reconnect"), headers=header)
    second = "shop-two"
    yield ("POST", "/devices"), "a second slot", 200, api.post(url("/devices"), json={"device_id": second})
    yield ("POST", "/devices/{device_id}/login/code"), "pairing-code login", 200, api.post(
        url(f"/devices/{second}/login/code"), params={"phone": "628912344551"})
    yield ("GET", "/app/login-with-code"), "code login by header", 200, api.get(
        url("/app/login-with-code"), params={"phone": "628912344552"}, headers={"X-Device-Id": second})
    yield ("POST", "/devices/{device_id}/logout"), "log out by path", 200, api.post(url(f"/devices/{second}/logout"))
    yield ("DELETE", "/devices/{device_id}"), "remove a slot", 200, api.delete(url(f"/devices/{second}"))
    yield ("GET", "/devices/{device_id}"), "a removed slot", 404, api.get(url(f"/devices/{second}"))


def table(doc):
    """README's table of the document's operations and wafleet's answer to each."""
    print("| Operation | wafleet |")
    print("|---|---|")
    tags_done = set()
    for key, operation in doc.operations.items():
        tags = set(operation.get("tags", [])) & OUT_OF_SCOPE_TAGS.keys()
        if tags:
            tag = tags.pop()
            if tag not in tags_done:
                tags_done.add(tag)
                count = sum(1 for o in doc.operations.values() if tag in o.get("tags", []))
                print(f"| `{tag}` ({count} operations) | out of scope: {OUT_OF_SCOPE_TAGS[tag]} |")
            continue
        method, route = key
        if key in OUT_OF_SCOPE:
            answer = f"out of scope: {OUT_OF_SCOPE[key]}"
        elif key in NOT_YET:
            answer = f"not yet: needs {NOT_YET[key]}"
        else:
            notes = [NOTES[key]] if key in NOTES else []
            notes += [why for (m, r, status), why in DEVIATIONS.items() if (m, r) == key]
            answer = "yes" + "".join(f"; {note}" for note in notes)
        print(f"| `{method} {route}` | {answer} |")


def main():
    if sys.argv[1] == "--table":
        table(Document(sys.argv[2]))
        return 0
    binary, document = sys.argv[1], sys.argv[2]
    doc = Document(document)
    for key in [*NOT_YET, *OUT_OF_SCOPE, *NOTES, *((m, r) for m, r, _ in DEVIATIONS)]:
        if key not in doc.operations:
            raise SystemExit(f"{key} is listed here but the document does not have it")

    def scope_of(key):
        places = []
        if key in OUT_OF_SCOPE or set(doc.operations[key].get("tags", [])) & OUT_OF_SCOPE_TAGS.keys():
            places.append("out of scope")
        if key in NOT_YET:
            places.append("not yet")
        return places

    app = Wafleet(binary)
    failures, tested = [], set()
    try:
        for key, what, expected, response in run_calls(doc, app):
            if key not in doc.operations:
                failures.append(f"{key[0]} {key[1]}: not in the document")
                continue
            tested.add(key)
            problems = doc.check(key, response)
            if response.status_code != expected:
                problems.append(f"expected {expected}, got {response.status_code}: {response.text[:300]}")
            verdict = "ok" if not problems else "MISMATCH"
            log(f"{verdict:8} {key[0]:6} {key[1]} ({what}) -> {response.status_code}")
            failures += [f"{key[0]} {key[1]} ({what}): {p}" for p in problems]
    finally:
        app.stop()

    for key in doc.operations:
        places = scope_of(key) + (["tested"] if key in tested else [])
        if not places:
            failures.append(f"{key[0]} {key[1]}: neither tested nor listed as out of scope or not yet")
        elif len(places) > 1:
            failures.append(f"{key[0]} {key[1]}: listed more than once ({', '.join(places)})")
    out = [k for k in doc.operations if "out of scope" in scope_of(k)]
    log(f"{len(tested)} operations tested, {len(NOT_YET)} not yet answered, {len(out)} out of scope, "
        f"of {len(doc.operations)} in the document")
    for (method, route), why in NOT_YET.items():
        log(f"not yet: {method} {route}: needs {why}")
    if failures:
        log(f"{len(failures)} mismatches:")
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    log("0 mismatches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
