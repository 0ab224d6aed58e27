"""What an admin does in each tracker to point its webhook at the listener
(`c9-sync integrations webhook ID`). Words only: never the secret, only where it is kept."""

from __future__ import annotations

from connectors.base import ConnectorConfig

SOURCES = ("github", "linear", "jira", "azure_devops")

_STEPS = {
    "github": [
        "In the repository (or organization) on GitHub: Settings > Webhooks > Add webhook.",
        "Payload URL: {url}",
        "Content type: application/json.",
        "Secret: the integration's webhook secret ({where}).",
        "Events: 'Let me select individual events': Issues, Pull requests, Sub-issues.",
        "GitHub does not redeliver a failed delivery by itself: polling covers what is lost.",
    ],
    "linear": [
        "In Linear: Settings > API > Webhooks > New webhook (a workspace admin).",
        "URL: {url}",
        "Resource types: Issues (and Cycles, Labels if you sync them).",
        "Copy Linear's signing secret into the integration's webhook secret ({where}).",
        "Linear signs each delivery with a timestamp: the daemon's clock must be within 60 s.",
    ],
    "jira": [
        "In Jira (an administrator): System > WebHooks > Create a WebHook.",
        "URL: {url}",
        "Secret: the integration's webhook secret ({where}); Jira then signs deliveries"
        " (X-Hub-Signature). Webhooks registered by OAuth or Connect apps are not signed and"
        " are refused.",
        "Events: Issue created, updated, deleted; a JQL filter matching the synced projects.",
    ],
    "azure_devops": [
        "In the project: Project settings > Service hooks > Create subscription > Web Hooks.",
        "Trigger: Work item created, updated, deleted (one subscription each), this project.",
        "URL: {url}",
        "Basic authentication username: c9-sync (any name); password: the integration's"
        " webhook secret ({where}). Azure DevOps sends it only over HTTPS.",
        "Resource details to send, messages to send: None (the payload is not read).",
    ],
}


def where(config: ConnectorConfig) -> str:
    """Where the secret is kept, by name: never its value."""
    if config.webhook_secret_env is not None:
        return f"environment variable {config.webhook_secret_env} of the worker"
    if config.webhook_secret_file is not None:
        return f"file {config.webhook_secret_file}"
    if config.webhook_secret is not None:
        return "webhook_secret in the integration's config"
    return "not set yet"


def steps(source: str, url: str, config: ConnectorConfig) -> list[str]:
    return [line.format(url=url, where=where(config)) for line in _STEPS[source]]
