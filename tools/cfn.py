"""Build AWS resources for tests from infra/template.yaml, so tests and infra cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt ...) as plain data."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Fn::" + tag_suffix if tag_suffix not in ("Ref", "Condition") else tag_suffix
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template() -> dict[str, Any]:
    with TEMPLATE.open() as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def table_properties(logical_id: str = "LedgerTable") -> dict[str, Any]:
    return dict(load_template()["Resources"][logical_id]["Properties"])


def create_table_from_template(
    dynamodb_client: Any, table_name: str, logical_id: str = "LedgerTable"
) -> None:
    """CreateTable (and UpdateTimeToLive) with the template's own table definition."""
    props = table_properties(logical_id)
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            kwargs[key] = props[key]
    dynamodb_client.create_table(**kwargs)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb_client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of one type (e.g. "AWS::Serverless::Function")."""
    return {rid: res for rid, res in template["Resources"].items() if res["Type"] == resource_type}


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's environment variables as deployed: Globals first, the function's own win."""
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {**global_vars, **own}
