"""infra/template.yaml read as data: environment, least privilege, wiring, dashboard and alarms.

No SAM CLI needed: tools/cfn.py loads the template with its short-form tags as plain dicts.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import fields
from typing import Any

import pytest

from astrabot.metric_names import ALL_METRICS
from astrabot.settings import SECRET_NAMES, Settings
from tools.cfn import TEMPLATE, function_environment, load_template, resources_of_type

ROOT = TEMPLATE.parents[1]
NAMESPACE = "AstraBotNexus"

# Function directory (= POWERTOOLS_SERVICE_NAME, the metrics' `service` dimension) -> logical id.
FUNCTIONS = {
    "interactions": "InteractionsFunction",
    "llm_call": "LlmCallFunction",
    "credit_poller": "CreditPollerFunction",
    "alert_notifier": "AlertNotifierFunction",
}

THRESHOLDS = ("CREDIT_LOW_TOKENS", "CREDIT_EMERGENCY_TOKENS", "CREDIT_CRITICAL_TOKENS")
GRANT_SETTINGS = (
    "DEFAULT_MODEL",
    "FALLBACK_MODELS",
    "DEFAULT_MAX_TOKENS",
    "TOKEN_SAFETY_BUFFER",
    "MIN_GRANT_TOKENS",
    "POLL_INTERVAL_SECONDS",
    *THRESHOLDS,
)
# What each function's settings need (DESIGN.md section 4); secrets by their `_PARAM` name.
EXPECTED_ENV = {
    "interactions": {
        "TABLE_NAME",
        "LLM_FUNCTION_NAME",
        "ALERT_TOPIC_ARN",
        "DISCORD_PUBLIC_KEY",
        "DISCORD_APPLICATION_ID",
        "NEXUS_ADMIN_USER_IDS",
        "NEXUS_ADMIN_ROLE_IDS",
        "MONTHLY_BUDGET_USD",
        *GRANT_SETTINGS,
    },
    "llm_call": {
        "TABLE_NAME",
        "DISCORD_APPLICATION_ID",
        "OPENROUTER_API_KEY_PARAM",
        "OPENROUTER_BASE_URL",
        "DISCORD_API_BASE_URL",
        "USER_DAILY_TOKEN_QUOTA",
        "MONTHLY_BUDGET_USD",
        *GRANT_SETTINGS,
    },
    "credit_poller": {
        "TABLE_NAME",
        "ALERT_TOPIC_ARN",
        "OPENROUTER_API_KEY_PARAM",
        "OPENROUTER_MANAGEMENT_KEY_PARAM",
        "OPENROUTER_BASE_URL",
        "ALERT_REMINDER_HOURS",
        "POLL_INTERVAL_SECONDS",
        "DEFAULT_MODEL",
        "FALLBACK_MODELS",
        *THRESHOLDS,
    },
    "alert_notifier": {"DISCORD_ALERT_WEBHOOK_URL_PARAM", "ALERT_MENTION_ROLE_ID", "TABLE_NAME"},
}

# Resource "*" only where AWS allows nothing narrower, each with the reason.
RESOURCE_WILDCARD_ALLOWED = {
    # A key policy is attached to its key; "*" there means "this key".
    ("AlertTopicKey", "AccountAdministersKeyAndDelegatesUseToIam"),
    ("AlertTopicKey", "CloudWatchAlarmsEncryptAlarmNotifications"),
}
# SAM policy templates allowed, each scoped by its argument to one of our resources.
POLICY_TEMPLATES = {"DynamoDBReadPolicy", "DynamoDBCrudPolicy", "SNSPublishMessagePolicy"}
AWS_METRICS = {
    "AWS/Lambda": {"Errors", "Throttles"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --- helpers -------------------------------------------------------------------------------------
def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(owner logical id, statement) for every policy statement written in the template."""
    found: list[tuple[str, dict[str, Any]]] = []
    for rid, res in template["Resources"].items():
        props = res.get("Properties", {})
        documents = [props.get("KeyPolicy"), props.get("PolicyDocument")]
        documents += [p.get("PolicyDocument") for p in props.get("Policies", []) if "PolicyDocument" in p]
        if res["Type"] == "AWS::Serverless::Function":
            documents += [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
        for document in filter(None, documents):
            found += [(rid, statement) for statement in as_list(document["Statement"])]
    return found


def wildcard_actions(statement: dict[str, Any]) -> list[str]:
    """Actions that are "*" or carry a wildcard ("s3:*", "kms:Create*")."""
    return [a for a in as_list(statement.get("Action", [])) if "*" in a]


def function_policies(template: dict[str, Any], logical_id: str) -> list[Any]:
    return list(template["Resources"][logical_id]["Properties"].get("Policies", []))


def own_statements(template: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in function_policies(template, logical_id)
        if isinstance(policy, dict) and "Statement" in policy
        for statement in as_list(policy["Statement"])
    ]


def refs(value: Any) -> set[str]:
    """Every name a value refers to through Ref, GetAtt or ${Name} inside Sub."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
        return set().union(*(refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value)) if value else set()
    return set()


def required_settings(function_dir: str) -> tuple[str, ...]:
    """The REQUIRED tuple a handler passes to load_settings, read without importing the handler."""
    source = (ROOT / "functions" / function_dir / "app.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "REQUIRED" for t in targets):
                return tuple(ast.literal_eval(node.value))  # type: ignore[arg-type]
    raise AssertionError(f"functions/{function_dir}/app.py has no REQUIRED = (...) of setting names")


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # ${...} only ever stands for a name, a region or a threshold: any number keeps the JSON valid.
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "0", body)))


def dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, list[str], dict[str, Any]]]:
    """(namespace, metric name, dimension names and values, rendering options) per plotted metric."""
    plotted = [m for w in dashboard_body(template)["widgets"] for m in w["properties"].get("metrics", [])]
    return [
        (m[0], m[1], m[2:-1], m[-1]) if isinstance(m[-1], dict) else (m[0], m[1], m[2:], {}) for m in plotted
    ]


# --- runtime -------------------------------------------------------------------------------------
def test_given_globals_when_read_then_functions_run_python313_on_arm64_with_active_tracing(
    template: dict[str, Any],
) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    for rid in FUNCTIONS.values():
        props = template["Resources"][rid]["Properties"]
        assert props.get("Runtime", "python3.13") == "python3.13", rid
        assert props.get("Architectures", ["arm64"]) == ["arm64"], rid


@pytest.mark.parametrize(("function_dir", "logical_id"), FUNCTIONS.items())
def test_given_a_function_when_built_then_its_code_is_its_own_directory(
    template: dict[str, Any], function_dir: str, logical_id: str
) -> None:
    code_uri = template["Resources"][logical_id]["Properties"]["CodeUri"]
    assert (TEMPLATE.parent / code_uri).resolve() == ROOT / "functions" / function_dir
    assert template["Globals"]["Function"]["Handler"] == "app.lambda_handler"


def test_given_the_layer_when_built_then_astrabot_lands_on_the_python_path_with_pinned_deps(
    template: dict[str, Any],
) -> None:
    layer = template["Resources"]["CommonLayer"]
    content = (TEMPLATE.parent / layer["Properties"]["ContentUri"]).resolve()
    # sam build copies ContentUri into the layer's python/ directory, which is on sys.path.
    assert (content / "astrabot" / "__init__.py").is_file()
    assert (content / "requirements.txt").read_text() == (ROOT / "layers/common/requirements.txt").read_text()
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"


# --- environment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("function_dir", FUNCTIONS)
def test_given_a_function_when_deployed_then_its_environment_has_every_setting_it_needs(
    template: dict[str, Any], function_dir: str
) -> None:
    env = function_environment(template, FUNCTIONS[function_dir])
    assert EXPECTED_ENV[function_dir] <= env.keys(), EXPECTED_ENV[function_dir] - env.keys()
    assert env["POWERTOOLS_SERVICE_NAME"] == function_dir


@pytest.mark.parametrize("function_dir", FUNCTIONS)
def test_given_a_handlers_required_settings_when_deployed_then_each_is_in_its_environment(
    template: dict[str, Any], function_dir: str
) -> None:
    env = function_environment(template, FUNCTIONS[function_dir])
    for name in required_settings(function_dir):
        assert (f"{name}_PARAM" if name in SECRET_NAMES else name) in env, (function_dir, name)


@pytest.mark.parametrize("function_dir", FUNCTIONS)
def test_given_an_environment_variable_when_set_then_settings_know_its_name(
    template: dict[str, Any], function_dir: str
) -> None:
    known = {f.name.upper() for f in fields(Settings)} | {f"{name}_PARAM" for name in SECRET_NAMES}
    env = function_environment(template, FUNCTIONS[function_dir])
    unknown = {name for name in env if name not in known and not name.startswith("POWERTOOLS_")}
    assert not unknown


def test_given_a_setting_shared_by_functions_when_deployed_then_all_get_the_same_value(
    template: dict[str, Any],
) -> None:
    values: dict[str, list[Any]] = {}
    for rid in FUNCTIONS.values():
        for name, value in function_environment(template, rid).items():
            if name != "POWERTOOLS_SERVICE_NAME":
                values.setdefault(name, []).append(value)
    drifted = {name: vals for name, vals in values.items() if any(v != vals[0] for v in vals)}
    assert not drifted


def test_given_the_poll_interval_choices_when_mapped_then_schedule_and_seconds_agree(
    template: dict[str, Any],
) -> None:
    unit_seconds = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}
    for minutes, entry in template["Mappings"]["PollInterval"].items():
        count, unit = re.fullmatch(r"rate\((\d+) (\w+)\)", entry["Expression"]).groups()  # type: ignore[union-attr]
        assert int(count) * unit_seconds[unit] == entry["Seconds"] == int(minutes) * 60
        assert (unit.endswith("s")) == (int(count) != 1)  # the scheduler rejects "rate(1 minutes)"
    allowed = template["Parameters"]["PollIntervalMinutes"]["AllowedValues"]
    assert set(allowed) == set(template["Mappings"]["PollInterval"])


# --- least privilege -----------------------------------------------------------------------------
def test_given_a_wildcard_action_when_checked_then_it_is_reported() -> None:
    statement = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:*", "*"], "Resource": "x"}
    assert wildcard_actions(statement) == ["s3:*", "*"]


def test_given_every_iam_statement_when_checked_then_no_action_has_a_wildcard(
    template: dict[str, Any],
) -> None:
    statements = iam_statements(template)
    assert len(statements) >= 10  # the collector does see the policies
    offenders = [(rid, statement) for rid, statement in statements if wildcard_actions(statement)]
    assert not offenders


def test_given_every_iam_statement_when_checked_then_resource_star_only_where_aws_requires_it(
    template: dict[str, Any],
) -> None:
    offenders = {
        (rid, statement.get("Sid"))
        for rid, statement in iam_statements(template)
        if statement["Effect"] == "Allow" and "*" in as_list(statement.get("Resource", []))
    }
    assert offenders <= RESOURCE_WILDCARD_ALLOWED, offenders - RESOURCE_WILDCARD_ALLOWED


@pytest.mark.parametrize("logical_id", FUNCTIONS.values())
def test_given_a_policy_template_when_used_then_it_is_scoped_to_one_of_our_resources(
    template: dict[str, Any], logical_id: str
) -> None:
    for policy in function_policies(template, logical_id):
        assert isinstance(policy, dict), f"{logical_id}: managed policy {policy!r}"
        if "Statement" in policy:
            continue
        [(name, args)] = policy.items()
        assert name in POLICY_TEMPLATES, (logical_id, name)
        assert refs(args), (logical_id, name, args)
        assert refs(args) <= template["Resources"].keys(), (logical_id, name, args)


@pytest.mark.parametrize("function_dir", FUNCTIONS)
def test_given_a_function_when_reading_secrets_then_it_may_read_exactly_its_own_parameters(
    template: dict[str, Any], function_dir: str
) -> None:
    env = function_environment(template, FUNCTIONS[function_dir])
    own = set().union(*(refs(v) for name, v in env.items() if name.endswith("_PARAM")))
    readable = set().union(
        *(
            refs(statement["Resource"])
            for statement in own_statements(template, FUNCTIONS[function_dir])
            if "ssm:GetParameter" in as_list(statement["Action"])
        )
    )
    assert readable - {"AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::NoValue"} == own


def test_given_the_interactions_role_when_invoking_then_only_llm_call_is_allowed(
    template: dict[str, Any],
) -> None:
    invokes = {
        (rid, json.dumps(statement["Resource"]))
        for rid in FUNCTIONS.values()
        for statement in own_statements(template, rid)
        if "lambda:InvokeFunction" in as_list(statement["Action"])
    }
    assert invokes == {("InteractionsFunction", json.dumps({"Fn::GetAtt": ["LlmCallFunction", "Arn"]}))}


# --- wiring --------------------------------------------------------------------------------------
def test_given_the_interactions_url_when_public_then_concurrency_is_capped(template: dict[str, Any]) -> None:
    props = template["Resources"]["InteractionsFunction"]["Properties"]
    assert props["FunctionUrlConfig"]["AuthType"] == "NONE"  # the Ed25519 signature is the auth
    condition, capped, _ = props["ReservedConcurrentExecutions"]["Fn::If"]
    assert capped == {"Ref": "InteractionsReservedConcurrency"}
    assert template["Parameters"]["InteractionsReservedConcurrency"]["Default"] > 0
    assert condition in template["Conditions"]


def test_given_llm_call_when_invoked_async_then_retries_end_inside_the_interaction_token_life(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["LlmCallFunction"]["Properties"]
    invoke = props["EventInvokeConfig"]
    assert 0 < invoke["MaximumRetryAttempts"] <= 2
    # Discord's interaction token works for 15 minutes; a retry must be able to finish inside it.
    assert invoke["MaximumEventAgeInSeconds"] + props["Timeout"] < 15 * 60
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
    }


def test_given_the_poller_schedule_when_read_then_rate_comes_from_the_parameter_with_retry_and_dlq(
    template: dict[str, Any],
) -> None:
    [event] = template["Resources"]["CreditPollerFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "ScheduleV2"
    props = event["Properties"]
    assert props["ScheduleExpression"] == {
        "Fn::FindInMap": ["PollInterval", {"Ref": "PollIntervalMinutes"}, "Expression"]
    }
    assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}


def test_given_the_alert_topic_when_read_then_it_is_kms_encrypted_with_a_key_alarms_can_use(
    template: dict[str, Any],
) -> None:
    topic = template["Resources"]["AlertTopic"]["Properties"]
    # Not alias/aws/sns: CloudWatch alarms cannot publish to a topic under the AWS managed key.
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertTopicKey"}
    key_principals = [
        s["Principal"] for s in template["Resources"]["AlertTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    ]
    assert {"Service": "cloudwatch.amazonaws.com"} in key_principals


def test_given_alerts_when_published_then_the_notifier_is_subscribed_and_email_is_optional(
    template: dict[str, Any],
) -> None:
    events = template["Resources"]["AlertNotifierFunction"]["Properties"]["Events"]
    topics = [e["Properties"]["Topic"] for e in events.values() if e["Type"] == "SNS"]
    assert topics == [{"Ref": "AlertTopic"}]
    email = template["Resources"]["AlertEmailSubscription"]
    assert email["Condition"] == "HasAlertEmail"
    assert email["Properties"]["Protocol"] == "email"


@pytest.mark.parametrize("logical_id", FUNCTIONS.values())
def test_given_a_function_when_it_logs_then_its_log_group_has_a_retention(
    template: dict[str, Any], logical_id: str
) -> None:
    group = template["Resources"][logical_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert template["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
    assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_given_the_ledger_table_when_read_then_on_demand_with_ttl_pitr_and_retained(
    template: dict[str, Any],
) -> None:
    table = template["Resources"]["LedgerTable"]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_given_the_test_table_when_built_from_the_template_then_ttl_is_on_expires_at(ddb: Any) -> None:
    [table] = ddb.list_tables()["TableNames"]
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveStatus"] == "ENABLED"


# --- dashboard and alarms ------------------------------------------------------------------------
def test_given_the_dashboard_when_read_then_every_custom_metric_is_one_the_code_emits(
    template: dict[str, Any],
) -> None:
    services = set(FUNCTIONS)
    for namespace, name, dimensions, _ in dashboard_metrics(template):
        if namespace == NAMESPACE:
            assert name in ALL_METRICS, name
            assert dimensions[0::2] == ["service"], name
            assert dimensions[1] in services, name
        else:
            assert name in AWS_METRICS[namespace], (namespace, name)


def test_given_the_dashboard_when_read_then_it_shows_what_the_issue_asks_for(
    template: dict[str, Any],
) -> None:
    shown = {
        (name, options.get("stat")) if name == "LLMLatencyMs" else name
        for _, name, _, options in dashboard_metrics(template)
    }
    wanted = {
        "CreditsRemainingUSD",
        "AffordableTokens",
        "CreditStatusLevel",
        "TokensRequested",
        "TokensGranted",
        "LLMCostUSD",
        ("LLMLatencyMs", "p50"),
        ("LLMLatencyMs", "p99"),
        "Requests402",
        "ReservationsRejected",
        "AlertsPublished",
        "Errors",
        "Throttles",
        "ApproximateNumberOfMessagesVisible",
    }
    assert wanted <= shown, wanted - shown


def test_given_the_alarms_when_read_then_each_watches_a_real_metric_and_notifies_the_topic(
    template: dict[str, Any],
) -> None:
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    watched = set()
    for rid, alarm in alarms.items():
        props = alarm["Properties"]
        if props["Namespace"] == NAMESPACE:
            assert props["MetricName"] in ALL_METRICS, rid
        else:
            assert props["MetricName"] in AWS_METRICS[props["Namespace"]], rid
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], rid
        # The topic policy lets only "<stack>-*" alarms publish.
        assert props["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), rid
        watched.add((props["MetricName"], json.dumps(props["Dimensions"])))
    assert {name for name, _ in watched} >= {
        "CreditStatusLevel",
        "CreditsRemainingUSD",
        "ApproximateNumberOfMessagesVisible",
        "Errors",
    }
    errors_for = {refs(json.loads(dims)).pop() for name, dims in watched if name == "Errors"}
    assert errors_for == set(FUNCTIONS.values())


# --- outputs -------------------------------------------------------------------------------------
def test_given_the_outputs_when_read_then_each_has_a_description_and_the_operator_ones_exist(
    template: dict[str, Any],
) -> None:
    outputs = template["Outputs"]
    assert {"InteractionsUrl", "DashboardUrl", "AlertTopicArn", "LedgerTableName"} <= outputs.keys()
    assert all(output.get("Description", "").strip() for output in outputs.values())


def test_given_the_docs_when_read_then_deploy_md_names_every_secret_parameter_default(
    template: dict[str, Any],
) -> None:
    deploy_md = (ROOT / "docs" / "DEPLOY.md").read_text()
    defaults = [p.get("Default") for name, p in template["Parameters"].items() if name.endswith("Param")]
    assert all(default in deploy_md for default in defaults if default)


def test_given_the_docs_when_read_then_every_parameter_without_a_default_is_explained() -> None:
    deploy_md = (ROOT / "docs" / "DEPLOY.md").read_text()
    required = [name for name, p in load_template()["Parameters"].items() if "Default" not in p]
    assert required
    assert all(name in deploy_md for name in required)
