"""Local fakes of doi.org and the dataset hosts' APIs: real HTTP/1.1 servers on loopback (stdlib only).

Each answers the routes the dataset providers use with the status codes, headers and JSON bodies the
public documentation shows, keeps a request log (`seen`) and has the switches of `FakeApi`
(`fail_status`, `delay`, `malformed`). Every fake listens on its own loopback address (127.0.0.x), so
sites are told apart by host name as they are in production.

doi.org (`FakeDoi`, doi.org/the-identifier/resources/factsheets/doi-resolution-documentation):
    GET /<doi>                          302 to the registered URL (HTML body); 404 "DOI Not Found"
Zenodo / InvenioRDM (`FakeZenodo`, developers.zenodo.org, inveniordm.docs.cern.ch/reference/rest_api_index):
    GET /doi/<doi>                      302 to /records/<id> (a concept DOI: to the newest version)
    GET /api/records/<id>               record JSON (`id`, `conceptrecid`, `doi`, `metadata.version`, ...);
                                        a concept id: 302 to the newest version's API URL;
                                        404 "The persistent identifier does not exist.";
                                        410 with a `tombstone` for a deleted record
  `X-RateLimit-Limit/Remaining/Reset` on every answer, as Zenodo sends them.
Figshare (`FakeFigshare`, docs.figshare.com):
    GET /v2/articles/<id>/versions      [{"version": n, "url": ...}]; 404 "Entity not found: article"
HydroShare (`FakeHydroShare`, www.hydroshare.org/hsapi/):
    GET /hsapi/resource/<id>/scimeta/elements   science metadata with `dates`; 404 / 403 `detail`
Dataverse (`FakeDataverse`, guides.dataverse.org/en/latest/api/native-api.html):
    GET /api/datasets/:persistentId?persistentId=doi:...   {"status": "OK", "data": {..., "latestVersion"}};
                                        404 {"status": "ERROR", "message": "Dataset with Persistent ID
                                        ... not found."}
CKAN (`FakeCKAN`, docs.ckan.org/en/latest/api/):
    GET /api/3/action/package_show?id=<name or id>   {"help", "success": true, "result": {...}};
                                        404 {"success": false, "error": {"__type": "Not Found Error"}};
                                        403 "Authorization Error" for a private dataset
    GET /api/3/action/status_show       site status (repo2docker's CKAN detection asks it)
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.support.fake_apis import Answer, FakeApi, _Handler, _Server

_addresses = itertools.count(2)


class _Fake(FakeApi):
    """A FakeApi on its own loopback address, which can read the query string of a request."""

    def __init__(self) -> None:
        super().__init__()
        self.address = f"127.0.0.{next(_addresses) % 250 + 2}"
        self._request = threading.local()

    def start(self) -> str:
        server = _Server((self.address, 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.url = f"http://{self.address}:{server.server_address[1]}"
        return self.url

    def _handle(self, h: _Handler) -> None:
        self._request.query = parse_qs(h.path.partition("?")[2])
        super()._handle(h)

    def query(self, name: str) -> str | None:
        values = getattr(self._request, "query", {}).get(name)
        return values[0] if values else None

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


# --- doi.org --------------------------------------------------------------------------------------


class FakeDoi(_Fake):
    """The DOI proxy: registered DOIs redirect to their URL."""

    def __init__(self) -> None:
        super().__init__()
        self.registered: dict[str, str] = {}  # lower-case DOI -> URL

    def __enter__(self) -> FakeDoi:
        self.start()
        return self

    def register(self, doi: str, url: str) -> None:
        self.registered[doi.lower()] = url

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        doi = unquote(path.lstrip("/"))
        url = self.registered.get(doi.lower())
        if url is None:
            page = (
                "<html><head><title>Error: DOI Not Found</title></head><body><h1>DOI Not Found</h1>"
                f"<p>{doi}</p><p>This DOI cannot be found in the DOI System.</p></body></html>"
            )
            return Answer(404, page.encode(), {"Content-Type": "text/html;charset=utf-8"})
        body = (
            f'<html><head><title>Handle Redirect</title></head><body><a href="{url}">{url}</a></body></html>'
        ).encode()
        return Answer(
            302,
            body,
            {
                "Content-Type": "text/html;charset=utf-8",
                "Location": url,
                "Expires": "Mon, 01 Jan 2024 00:00:00 GMT",
            },
        )


# --- Zenodo ---------------------------------------------------------------------------------------


@dataclass
class ZenodoRecord:
    id: int
    concept: int
    version: str = "v1.0"
    deleted: str | None = None  # a removal reason: the record answers 410 with a tombstone


class FakeZenodo(_Fake):
    """Zenodo's REST API (InvenioRDM) and its `/doi/` redirects."""

    doi_prefix = "10.5281"

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[int, ZenodoRecord] = {}
        self.limit = 133
        self.used = 0

    def __enter__(self) -> FakeZenodo:
        self.start()
        return self

    def add(self, record_id: int, *, concept: int, version: str = "v1.0") -> ZenodoRecord:
        record = ZenodoRecord(record_id, concept, version)
        self.records[record_id] = record
        return record

    def newest(self, concept: int) -> ZenodoRecord | None:
        versions = [r for r in self.records.values() if r.concept == concept and not r.deleted]
        return max(versions, key=lambda r: r.id) if versions else None

    def common_headers(self, headers: dict[str, str]) -> dict[str, str]:
        self.used += 1
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": str(int(time.time()) + 60),
        }

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        seg = path.strip("/").split("/")
        if seg[0] == "doi" and len(seg) >= 3:  # /doi/10.5281/zenodo.<n>
            number = seg[-1].removeprefix("zenodo.")
            target = self._target(int(number)) if number.isdigit() else None
            if target is None:
                return self._missing()
            return Answer(302, b"", {"Location": f"{self.url}/records/{target.id}"})
        if seg[:2] == ["api", "records"] and len(seg) == 3 and seg[2].isdigit():
            record_id = int(seg[2])
            record = self.records.get(record_id)
            if record is None:
                newest = self.newest(record_id)  # a concept id: on to its newest version
                if newest is not None:
                    return Answer(302, b"", {"Location": f"{self.url}/api/records/{newest.id}"})
                return self._missing()
            if record.deleted:
                return Answer.json(
                    410,
                    {
                        "status": 410,
                        "message": "The record has been deleted.",
                        "tombstone": {
                            "removal_reason": {"id": record.deleted},
                            "note": "",
                            "removed_by": {"user": "system"},
                            "removal_date": "2024-03-01T10:00:00",
                            "citation_text": f"Record {record.id}",
                            "is_visible": True,
                        },
                    },
                )
            return Answer.json(200, self._record_json(record), ETag=f'"{record.id}"')
        return Answer.json(404, {"status": 404, "message": "The requested URL was not found on the server."})

    def _target(self, number: int) -> ZenodoRecord | None:
        record = self.records.get(number)
        return record if record is not None and not record.deleted else self.newest(number)

    def _missing(self) -> Answer:
        return Answer.json(404, {"status": 404, "message": "The persistent identifier does not exist."})

    def _record_json(self, r: ZenodoRecord) -> dict[str, Any]:
        doi = f"{self.doi_prefix}/zenodo.{r.id}"
        return {
            "created": "2019-06-12T09:30:00.000000+00:00",
            "modified": "2024-01-15T12:00:00.000000+00:00",
            "id": r.id,
            "conceptrecid": str(r.concept),
            "doi": doi,
            "conceptdoi": f"{self.doi_prefix}/zenodo.{r.concept}",
            "doi_url": f"https://doi.org/{doi}",
            "metadata": {
                "title": "binder-examples/requirements",
                "doi": doi,
                "publication_date": "2019-06-12",
                "version": r.version,
                "resource_type": {"title": "Software", "type": "software"},
                "access_right": "open",
                "license": {"id": "bsd-3-clause"},
                "relations": {
                    "version": [{"index": 0, "is_last": True, "parent": {"pid_value": str(r.concept)}}]
                },
            },
            "title": "binder-examples/requirements",
            "links": {
                "self": f"{self.url}/api/records/{r.id}",
                "self_html": f"{self.url}/records/{r.id}",
                "doi": f"https://doi.org/{doi}",
                "parent": f"{self.url}/api/records/{r.concept}",
                "files": f"{self.url}/api/records/{r.id}/files",
                "latest": f"{self.url}/api/records/{r.id}/versions/latest",
            },
            "files": [
                {
                    "id": str(uuid.UUID(int=r.id)),
                    "key": "binder-examples/requirements-v1.0.zip",
                    "size": 3315,
                    "checksum": "md5:0b5b7e3ff1e0bc1e0cd4e5a1e3b3e1c8",
                    "links": {"self": f"{self.url}/api/records/{r.id}/files/requirements.zip/content"},
                }
            ],
            "status": "published",
            "state": "done",
            "submitted": True,
        }


# --- Figshare -------------------------------------------------------------------------------------


class FakeFigshare(_Fake):
    """Figshare's public API v2 (articles and their versions)."""

    def __init__(self) -> None:
        super().__init__()
        self.articles: dict[int, list[int]] = {}  # id -> published versions

    def __enter__(self) -> FakeFigshare:
        self.start()
        return self

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        seg = path.strip("/").split("/")
        if seg[:2] == ["v2", "articles"] and len(seg) >= 3 and seg[2].isdigit():
            versions = self.articles.get(int(seg[2]))
            if versions is None:
                return Answer.json(404, {"message": "Entity not found: article", "code": "EntityNotFound"})
            if seg[3:] == ["versions"]:
                api = f"{self.url}/v2/articles/{seg[2]}/versions"
                return Answer.json(200, [{"version": v, "url": f"{api}/{v}"} for v in versions])
        return Answer.json(404, {"message": "Not Found", "code": "NotFound"})


# --- HydroShare -----------------------------------------------------------------------------------


@dataclass
class HsResource:
    id: str
    modified: str  # HydroShare's form: "2019-09-25T16:08:44.212624Z"
    public: bool = True


class FakeHydroShare(_Fake):
    """HydroShare's REST API (`/hsapi/`)."""

    def __init__(self) -> None:
        super().__init__()
        self.resources: dict[str, HsResource] = {}

    def __enter__(self) -> FakeHydroShare:
        self.start()
        return self

    def add(self, resource_id: str, modified: str, *, public: bool = True) -> HsResource:
        resource = HsResource(resource_id, modified, public)
        self.resources[resource_id] = resource
        return resource

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        seg = path.strip("/").split("/")
        if seg[:2] == ["hsapi", "resource"] and seg[3:] == ["scimeta", "elements"]:
            resource = self.resources.get(seg[2])
            if resource is None:
                return Answer.json(404, {"detail": f"No resource was found for resource id:{seg[2]}"})
            if not resource.public:
                return Answer.json(403, {"detail": "You do not have permission to perform this action."})
            return Answer.json(
                200,
                {
                    "title": "A HydroShare resource",
                    "creators": [{"name": "Doe, Jane", "order": 1}],
                    "dates": [
                        {"type": "created", "start_date": "2019-09-20T10:00:00.000000Z", "end_date": None},
                        {"type": "modified", "start_date": resource.modified, "end_date": None},
                        {"type": "published", "start_date": "2019-09-21T10:00:00Z", "end_date": None},
                    ],
                    "identifiers": [
                        {"name": "hydroShareIdentifier", "url": f"{self.url}/resource/{resource.id}"}
                    ],
                    "language": "eng",
                    "rights": {
                        "statement": "CC BY 4.0",
                        "url": "http://creativecommons.org/licenses/by/4.0/",
                    },
                },
                Allow="GET, PUT, HEAD, OPTIONS",
                Vary="Accept, Cookie",
            )
        return Answer.json(404, {"detail": "Not found."})


# --- Dataverse ------------------------------------------------------------------------------------


@dataclass
class DvDataset:
    id: int
    authority: str
    identifier: str
    major: int = 1
    minor: int = 0
    state: str = "RELEASED"

    @property
    def persistent_id(self) -> str:
        return f"doi:{self.authority}/{self.identifier}"


class FakeDataverse(_Fake):
    """A Dataverse installation's native API (datasets by persistent id)."""

    _ids = itertools.count(3035000)

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, DvDataset] = {}  # persistent id, upper case -> dataset

    def __enter__(self) -> FakeDataverse:
        self.start()
        return self

    def add(self, doi: str, *, major: int = 1, minor: int = 0, state: str = "RELEASED") -> DvDataset:
        authority, _, identifier = doi.partition("/")
        dataset = DvDataset(next(self._ids), authority, identifier, major, minor, state)
        self.datasets[dataset.persistent_id.upper()] = dataset
        return dataset

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        if path != "/api/datasets/:persistentId" and path != "/api/datasets/:persistentId/":
            return Answer.json(
                404, {"status": "ERROR", "message": "API endpoint does not exist on this server."}
            )
        pid = self.query("persistentId") or ""
        dataset = self.datasets.get(pid.upper())
        if dataset is None:
            return Answer.json(
                404, {"status": "ERROR", "message": f"Dataset with Persistent ID {pid} not found."}
            )
        site = self.url
        return Answer.json(
            200,
            {
                "status": "OK",
                "data": {
                    "id": dataset.id,
                    "identifier": dataset.identifier,
                    "persistentUrl": f"https://doi.org/{dataset.authority}/{dataset.identifier}",
                    "protocol": "doi",
                    "authority": dataset.authority,
                    "publisher": "Harvard Dataverse",
                    "publicationDate": "2019-06-04",
                    "storageIdentifier": f"s3://{dataset.authority}/{dataset.identifier}",
                    "latestVersion": {
                        "id": dataset.id + 100000,
                        "datasetId": dataset.id,
                        "datasetPersistentId": dataset.persistent_id,
                        "storageIdentifier": f"s3://{dataset.authority}/{dataset.identifier}",
                        "versionNumber": dataset.major,
                        "versionMinorNumber": dataset.minor,
                        "versionState": dataset.state,
                        "latestVersionPublishingState": dataset.state,
                        "lastUpdateTime": "2019-06-04T16:37:27Z",
                        "releaseTime": "2019-06-04T16:37:27Z",
                        "createTime": "2019-06-04T16:31:37Z",
                        "license": {
                            "name": "CC0 1.0",
                            "uri": "http://creativecommons.org/publicdomain/zero/1.0",
                        },
                        "files": [
                            {
                                "label": "requirements.txt",
                                "restricted": False,
                                "version": 1,
                                "datasetVersionId": dataset.id + 100000,
                                "dataFile": {
                                    "id": dataset.id + 1,
                                    "persistentId": "",
                                    "filename": "requirements.txt",
                                    "contentType": "text/plain",
                                    "filesize": 12,
                                    "storageIdentifier": f"s3://{site}/x",
                                    "md5": "0b5b7e3ff1e0bc1e0cd4e5a1e3b3e1c8",
                                },
                            }
                        ],
                    },
                },
            },
        )


# --- CKAN -----------------------------------------------------------------------------------------


@dataclass
class CkanDataset:
    name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    metadata_modified: str = "2023-02-22T14:49:31.960539"
    private: bool = False
    state: str = "active"


class FakeCKAN(_Fake):
    """A CKAN site's action API (CKAN 2.9+), optionally under a path prefix."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.datasets: dict[str, CkanDataset] = {}

    def __enter__(self) -> FakeCKAN:
        self.start()
        return self

    def add(self, name: str, **kwargs: Any) -> CkanDataset:
        dataset = CkanDataset(name, **kwargs)
        self.datasets[name] = dataset
        return dataset

    def _help(self, action: str) -> str:
        return f"{self.url}{self.prefix}/api/3/action/help_show?name={action}"

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        action = path.removeprefix(self.prefix + "/api/3/action/")
        if action == path:
            return Answer(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
        if action == "status_show":
            return Answer.json(
                200,
                {
                    "help": self._help(action),
                    "success": True,
                    "result": {"site_title": "CKAN Demo", "ckan_version": "2.10.4", "extensions": []},
                },
            )
        if action != "package_show":
            return Answer.json(
                400,
                {
                    "help": self._help(action),
                    "success": False,
                    "error": {
                        "message": f"Bad request - Action name not known: {action}",
                        "__type": "Bad Request",
                    },
                },
            )
        wanted = self.query("id") or ""
        dataset = next((d for d in self.datasets.values() if wanted in (d.name, d.id)), None)
        if dataset is None or dataset.state == "deleted":
            return Answer.json(
                404,
                {
                    "help": self._help(action),
                    "success": False,
                    "error": {"message": "Not found", "__type": "Not Found Error"},
                },
            )
        if dataset.private:
            return Answer.json(
                403,
                {
                    "help": self._help(action),
                    "success": False,
                    "error": {
                        "message": f"Access denied: User  not authorized to read package {dataset.id}",
                        "__type": "Authorization Error",
                    },
                },
            )
        return Answer.json(
            200,
            {
                "help": self._help(action),
                "success": True,
                "result": {
                    "id": dataset.id,
                    "name": dataset.name,
                    "title": dataset.name.replace("-", " ").title(),
                    "type": "dataset",
                    "state": dataset.state,
                    "private": dataset.private,
                    "metadata_created": "2021-04-09T14:20:15.123456",
                    "metadata_modified": dataset.metadata_modified,
                    "num_resources": 1,
                    "resources": [
                        {
                            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, dataset.id)),
                            "package_id": dataset.id,
                            "url": f"{self.url}/dataset/{dataset.id}/resource/data.csv",
                            "format": "CSV",
                            "name": "data.csv",
                        }
                    ],
                    "tags": [],
                    "organization": None,
                },
            },
        )
