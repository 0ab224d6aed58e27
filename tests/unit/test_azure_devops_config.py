"""Azure DevOps config: the `entra:` key (exactly one way to authenticate, one-line errors),
`project` / `projects`, and on-premises collection URLs (docs/trackers/azure_devops.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.azure_devops import AzureDevOpsConfig, org_identity, scope_key, web_url
from connectors.entra import ADO_SCOPE, EntraConfig

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "00000000-1111-2222-3333-444444444444"
ORG = "https://dev.azure.com/acme"


def config(**values: Any) -> AzureDevOpsConfig:
    return AzureDevOpsConfig.model_validate({"organization_url": ORG, "project": "Web", **values})


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as info:
        config(**values)
    (error,) = info.value.errors()
    message = str(error["msg"])
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("entra", "kind"),
    [
        ({"tenant_id": TENANT, "client_id": CLIENT, "client_secret_env": "S"}, "client_secret"),
        ({"tenant_id": TENANT, "client_id": CLIENT, "client_secret_file": "/s"}, "client_secret"),
        ({"tenant_id": TENANT, "client_id": CLIENT, "certificate_file": "/c.pem"}, "certificate"),
        ({"managed_identity": True}, "managed_identity"),
        ({"managed_identity": True, "client_id": CLIENT}, "managed_identity"),
        ({"workload_identity": True}, "workload_identity"),
        ({"workload_identity": True, "token_file": "/var/run/t"}, "workload_identity"),
    ],
)
def test_each_credential_kind_is_one_entra_key(entra: dict[str, Any], kind: str) -> None:
    parsed = config(entra=entra)
    assert parsed.entra is not None and parsed.entra.kind() == kind
    assert parsed.uses_token() is False
    assert config(token="pat").uses_token() is True


@pytest.mark.parametrize(
    ("entra", "says"),
    [
        ({}, "entra needs one way to authenticate"),
        (
            {
                "tenant_id": TENANT,
                "client_id": CLIENT,
                "client_secret": "x",
                "managed_identity": True,
            },
            "one way to authenticate, got client_secret and managed_identity",
        ),
        (
            {
                "tenant_id": TENANT,
                "client_id": CLIENT,
                "client_secret": "x",
                "client_secret_env": "S",
            },
            "only one of client_secret, client_secret_env",
        ),
        ({"client_id": CLIENT, "client_secret_env": "S"}, "service principal needs tenant_id"),
        ({"tenant_id": TENANT, "certificate_file": "/c"}, "service principal needs client_id"),
        ({"managed_identity": True, "tenant_id": TENANT}, "managed identity takes only client_id"),
        (
            {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": "x", "token_file": "/t"},
            "token_file goes with workload_identity",
        ),
        (
            {"managed_identity": True, "certificate_password_env": "P"},
            "certificate_password_env goes with certificate_file",
        ),
        (
            {"workload_identity": True, "authority_host": "http://login.example"},
            "must be https",
        ),
        (
            {"workload_identity": True, "authority_host": "https://login.example/tenant"},
            "host name such as login.microsoftonline.us",
        ),
        ({"workload_identity": True, "tenant_id": "a b"}, "GUIDs"),
        ({"managed_identity": True, "client_secret_envv": "S"}, "Extra inputs"),
    ],
)
def test_entra_refusals_are_one_line(entra: dict[str, Any], says: str) -> None:
    assert says in refusal(entra=entra)


def test_entra_and_a_token_are_not_both_given() -> None:
    assert "give entra or token_env, not both" in refusal(
        token_env="ADO_PAT", entra={"managed_identity": True}
    )


def test_authority_host_is_normalised_to_https() -> None:
    parsed = EntraConfig(workload_identity=True, authority_host="login.microsoftonline.us/")
    assert parsed.authority_host == "https://login.microsoftonline.us"
    assert EntraConfig(workload_identity=True, authority_host="https://127.0.0.1:8443")


def test_the_secret_is_never_shown_by_the_config() -> None:
    parsed = config(entra={"tenant_id": TENANT, "client_id": CLIENT, "client_secret": "pl4nted"})
    assert "pl4nted" not in repr(parsed) and "pl4nted" not in str(parsed)
    assert ADO_SCOPE == "499b84ac-1321-427f-aa17-267ca6975798/.default"


def test_principal_names_only_ids() -> None:
    assert EntraConfig(managed_identity=True).principal() == "the system-assigned managed identity"
    assert CLIENT in EntraConfig(managed_identity=True, client_id=CLIENT).principal()
    secret = EntraConfig(tenant_id=TENANT, client_id=CLIENT, client_secret="x")  # type: ignore[arg-type]
    assert secret.principal() == f"app {CLIENT} in tenant {TENANT}"


# ---------------------------------------------------------------------------------------------
# Projects
# ---------------------------------------------------------------------------------------------
def test_project_or_projects_exactly_one() -> None:
    assert config().project_names() == ["Web"]
    assert config(project=None, projects=[" Web ", "Mobile"]).project_names() == ["Web", "Mobile"]
    assert "exactly one of them" in refusal(projects=["Mobile"])
    assert "exactly one of them" in refusal(project=None)
    assert "names 'web' twice" in refusal(project=None, projects=["Web", "web"])
    assert "empty" in refusal(project=None, projects=["Web", " "])
    assert "at least one" in refusal(project=None, projects=[])


def test_area_path_goes_with_a_single_project() -> None:
    assert config(area_path="Web\\Team").area_path == "Web\\Team"
    assert config(project=None, projects=["Web"], area_path="Web\\Team").area_path
    assert "single project" in refusal(project=None, projects=["Web", "Api"], area_path="Web\\T")


def test_scope_keys_name_the_project() -> None:
    parsed = config(project=None, projects=["Web", "Mobile"], work_item_types=["Bug"])
    assert scope_key(parsed, "Bug", "Mobile") == "Mobile/*/Bug"
    assert scope_key(parsed, None, "Web") == "Web/*/*"


# ---------------------------------------------------------------------------------------------
# Azure DevOps Server URLs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "site"),
    [
        (
            "https://ado.corp.example:8080/tfs/DefaultCollection",
            "ado.corp.example:8080/tfs/defaultcollection",
        ),
        ("https://ado.corp.example/DefaultCollection/", "ado.corp.example/defaultcollection"),
        ("https://ado.corp.example:443/tfs/Fabrikam", "ado.corp.example:443/tfs/fabrikam"),
        ("https://dev.azure.com/Acme", "dev.azure.com/acme"),
        ("https://acme.visualstudio.com/DefaultCollection", "dev.azure.com/acme"),
    ],
)
def test_collection_urls(url: str, site: str) -> None:
    parsed = AzureDevOpsConfig(organization_url=url, project="My Project")
    assert parsed.organization_url == url.rstrip("/")
    assert org_identity(parsed.organization_url) == site
    assert web_url(parsed.organization_url, "My Project", 7) == (
        f"{url.rstrip('/')}/My%20Project/_workitems/edit/7"
    )
