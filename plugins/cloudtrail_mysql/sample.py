"""Realistic sample CloudTrail days, laid out in S3 form, for the demo, the tests and the benchmark.

Files follow CloudTrail's layout and naming
(``AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<ts>_<id>.json.gz``),
with digest files beside them, events of eventVersion 1.0 to 1.11 from many services, errors,
nested objects, booleans, numbers, arrays, and events from just before midnight in the day's
first files, as CloudTrail delivers them.
"""

from __future__ import annotations

import gzip
import random
import string
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from cloudtrail_mysql.layout import FileKind, day_prefix, file_name

__all__ = ["SampleFile", "day_files", "write_files", "DEFAULT_ACCOUNTS", "DEFAULT_REGIONS"]

DEFAULT_ACCOUNTS = ("111122223333", "444455556666")
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")

# service -> (weight, event names); weights loosely follow the tutorial's 14M-record day.
SERVICES: dict[str, tuple[int, tuple[str, ...]]] = {
    "sts.amazonaws.com": (38, ("AssumeRole", "GetCallerIdentity", "AssumeRoleWithWebIdentity")),
    "dynamodb.amazonaws.com": (28, ("DescribeTable", "ListTables", "DescribeTimeToLive")),
    "kms.amazonaws.com": (14, ("Decrypt", "GenerateDataKey", "Encrypt")),
    "sns.amazonaws.com": (9, ("Publish", "ListTopics", "GetTopicAttributes")),
    "ecr.amazonaws.com": (4, ("GetAuthorizationToken", "BatchGetImage")),
    "ec2.amazonaws.com": (3, ("DescribeInstances", "RunInstances", "TerminateInstances", "CreateTags", "DescribeSecurityGroups",
                              "AuthorizeSecurityGroupIngress")),
    "s3.amazonaws.com": (2, ("GetBucketAcl", "ListBuckets", "PutBucketPolicy", "GetBucketLocation")),
    "elasticmapreduce.amazonaws.com": (1, ("DescribeCluster", "ListClusters", "ListSteps", "RunJobFlow", "TerminateJobFlows")),
    "iam.amazonaws.com": (1, ("GetRole", "ListRoles", "CreateUser", "AttachRolePolicy")),
    "monitoring.amazonaws.com": (1, ("PutMetricAlarm", "DescribeAlarms")),
    "lambda.amazonaws.com": (1, ("ListFunctions20150331", "GetFunction20150331v2")),
    "signin.amazonaws.com": (1, ("ConsoleLogin",)),
    "autoscaling.amazonaws.com": (1, ("DescribeAutoScalingGroups",)),
    "cloudtrail.amazonaws.com": (1, ("DescribeTrails", "LookupEvents", "GetTrailStatus", "StopLogging")),
}
VERSIONS = ("1.0", "1.01", "1.02", "1.03", "1.04", "1.05", "1.06", "1.07", "1.08", "1.09", "1.10", "1.11")
ERRORS = (
    ("AccessDenied", "User is not authorized to perform this operation"),
    ("ThrottlingException", "Rate exceeded"),
    ("ResourceNotFoundException", "Requested resource not found"),
    ("Client.UnauthorizedOperation", "You are not authorized to perform this operation."),
)
AGENTS = (
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2023 prompt/off command/sts.get-caller-identity",
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7",
    "aws-sdk-java/1.12.600 Linux/5.10 OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS java/17.0.9",
    "console.amazonaws.com",
    "elasticmapreduce.amazonaws.com",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 \U0001F680",
)


@dataclass(frozen=True)
class SampleFile:
    """One generated object: its key in the bucket, its gzip bytes and how many events it holds."""

    key: str
    body: bytes
    records: int


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_identity(rng: random.Random, account: str, service: str) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.45:
        role = rng.choice(("app-role", "deploy", "EMR_EC2_DefaultRole", "ReadOnly"))
        session = f"session-{rng.randrange(1000)}"
        return {
            "type": "AssumedRole",
            "principalId": f"AROA{rng.randrange(10**12):012d}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "accountId": account,
            "accessKeyId": f"ASIA{rng.randrange(10**12):012d}",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": f"AROA{rng.randrange(10**12):012d}",
                    "arn": f"arn:aws:iam::{account}:role/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "webIdFederationData": {},
                "attributes": {"creationDate": "2017-04-10T00:00:00Z", "mfaAuthenticated": "false"},
            },
        }
    if roll < 0.75:
        user = rng.choice(("alice", "bob", "ci-bot", "Alice"))
        return {
            "type": "IAMUser",
            "principalId": f"AIDA{rng.randrange(10**12):012d}",
            "arn": f"arn:aws:iam::{account}:user/{user}",
            "accountId": account,
            "accessKeyId": f"AKIA{rng.randrange(10**12):012d}",
            "userName": user,
        }
    if roll < 0.97:
        return {"type": "AWSService", "invokedBy": rng.choice(tuple(SERVICES))}
    if roll < 0.99:
        return {"type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root", "accountId": account}
    return None  # some service events carry no userIdentity at all


def _event(rng: random.Random, account: str, region: str, moment: datetime) -> dict[str, Any]:
    services = tuple(SERVICES)
    service = rng.choices(services, weights=[SERVICES[s][0] for s in services])[0]
    name = rng.choice(SERVICES[service][1])
    version = rng.choices(VERSIONS, weights=(1, 1, 1, 1, 1, 2, 2, 3, 6, 8, 10, 12))[0]
    minor = int(version.split(".")[1] or 0)
    event: dict[str, Any] = {"eventVersion": version}
    identity = _user_identity(rng, account, service)
    if identity is not None:
        event["userIdentity"] = identity
    event.update(
        {
            "eventTime": _iso(moment),
            "eventSource": service,
            "eventName": name,
            "awsRegion": "us-east-1" if service in ("iam.amazonaws.com", "signin.amazonaws.com") else region,
            "sourceIPAddress": rng.choice(
                (f"203.0.113.{rng.randrange(1, 255)}", f"198.51.100.{rng.randrange(1, 255)}", "AWS Internal", service)
            ),
            "userAgent": rng.choice(AGENTS),
        }
    )
    if rng.random() < 0.06:
        code, message = rng.choice(ERRORS)
        event["errorCode"] = code
        event["errorMessage"] = message
        event["responseElements"] = None
    else:
        event["responseElements"] = (
            None if rng.random() < 0.6 else {"credentials": {"expiration": "Apr 10, 2017 1:00:00 PM"}, "count": rng.randrange(100)}
        )
    event["requestParameters"] = rng.choice(
        (
            None,
            {"roleArn": f"arn:aws:iam::{account}:role/app-role", "durationSeconds": 3600, "roleSessionName": "s"},
            {"tableName": f"table-{rng.randrange(50)}", "consistentRead": rng.random() < 0.5},
            {"instancesSet": {"items": [{"instanceId": f"i-{rng.randrange(16**8):08x}"} for _ in range(rng.randrange(1, 4))]}, "dryRun": False},
            {"encryptionContext": {"aws:lambda:FunctionArn": f"arn:aws:lambda:{region}:{account}:function:f"}, "keySpec": "AES_256", "ratio": 0.25},
        )
    )
    event["requestID"] = str(uuid.UUID(int=rng.getrandbits(128)))
    if rng.random() > 0.005:  # a few service events have no eventID
        event["eventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
    event["eventType"] = "AwsConsoleSignIn" if service == "signin.amazonaws.com" else rng.choice(("AwsApiCall", "AwsApiCall", "AwsServiceEvent"))
    if minor >= 2 and rng.random() < 0.3:
        event["resources"] = [{"ARN": f"arn:aws:kms:{region}:{account}:key/{uuid.UUID(int=rng.getrandbits(128))}", "accountId": account, "type": "AWS::KMS::Key"}]
    if minor >= 4:
        event["readOnly"] = name.startswith(("Describe", "List", "Get"))
    if minor >= 5 and rng.random() < 0.1:
        event["additionalEventData"] = {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/", "bytesTransferredIn": rng.randrange(10**6)}
    if minor >= 5 and rng.random() < 0.05:
        event["sharedEventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
    if minor >= 6:
        event["managementEvent"] = True
    if minor >= 7:
        event["eventCategory"] = "Management"
    if minor >= 8:
        event["recipientAccountId"] = account
        if rng.random() < 0.5:
            event["tlsDetails"] = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": f"{service.split('.')[0]}.{region}.amazonaws.com"}
        if identity is not None and rng.random() < 0.05:
            event["sessionCredentialFromConsole"] = "true"
    else:
        event["recipientAccountId"] = account
    if minor >= 9 and rng.random() < 0.03:
        event["vpcEndpointId"] = f"vpce-{rng.randrange(16**8):08x}"
    if minor >= 10 and rng.random() < 0.02:
        event["serviceEventDetails"] = {"snapshotId": f"snap-{rng.randrange(16**8):08x}", "progress": [1, 2, 3]}
    if minor >= 11 and rng.random() < 0.01:
        event["vpcEndpointAccountId"] = account
    if service == "signin.amazonaws.com":
        _console_login(rng, event)
    return event


def _console_login(rng: random.Random, event: dict[str, Any]) -> None:
    """A console sign-in as CloudTrail records it: success or failure, with or without MFA."""
    failed = rng.random() < 0.2
    event["responseElements"] = {"ConsoleLogin": "Failure" if failed else "Success"}
    event["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home",
        "MobileVersion": "No",
        "MFAUsed": rng.choice(("Yes", "No")),
    }
    event["requestParameters"] = None
    event.pop("errorCode", None)
    event.pop("errorMessage", None)
    if failed:
        event["errorMessage"] = "Failed authentication"


def _unique_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(16))


def day_files(
    day: date,
    records: int = 20_000,
    accounts: Sequence[str] = DEFAULT_ACCOUNTS,
    regions: Sequence[str] = DEFAULT_REGIONS,
    organization_id: str | None = None,
    key_prefix: str = "",
    files_per_region: int | None = None,
    digests: bool = True,
    insight: bool = False,
    seed: int = 0,
) -> Iterator[SampleFile]:
    """The objects CloudTrail would deliver on ``day``, one at a time (never the whole day in memory).

    About ``records`` events in all, spread over accounts, regions and files; the day's first file in
    each region holds events from the last minutes of the previous day.
    """
    rng = random.Random(f"{seed}-{day.isoformat()}-{organization_id}")
    streams = [(a, r) for a in accounts for r in regions]
    per_stream = max(1, records // len(streams))
    count = files_per_region or max(1, min(288, per_stream // 20))
    start = datetime.combine(day, time(0, 0), tzinfo=timezone.utc)
    produced = 0
    for stream_index, (account, region) in enumerate(streams):
        want = records - produced if stream_index == len(streams) - 1 else per_stream
        window = timedelta(days=1) / count
        for file_index in range(count):
            n = want // count + (1 if file_index < want % count else 0)
            if n <= 0:
                continue
            delivered = start + window * (file_index + 1) - timedelta(minutes=1)
            earliest = start + window * file_index - timedelta(minutes=15 if file_index == 0 else 0)
            span = max(1, int((delivered - earliest).total_seconds()) - 60)
            events = sorted(
                (_event(rng, account, region, earliest + timedelta(seconds=rng.randrange(span))) for _ in range(n)),
                key=lambda e: e["eventTime"],
            )
            stamp = delivered.strftime("%Y%m%dT%H%MZ")
            folder = day_prefix(account, region, day, key_prefix, organization_id)
            name = file_name(account, region, f"{stamp}_{_unique_id(rng)}")
            body = gzip.compress(orjson.dumps({"Records": events}), compresslevel=6, mtime=0)
            produced += n
            yield SampleFile(folder + name, body, n)
        if digests:
            for hour in range(0, 24, 6):
                end = start + timedelta(hours=hour + 1)
                folder = day_prefix(account, region, day, key_prefix, organization_id, FileKind.DIGEST.value)
                name = file_name(account, region, f"management-trail_{region}_{end:%Y%m%dT%H%M%SZ}", FileKind.DIGEST.value)
                digest = {
                    "awsAccountId": account,
                    "digestStartTime": _iso(end - timedelta(hours=1)),
                    "digestEndTime": _iso(end),
                    "digestS3Bucket": "cloudtrail-bucket",
                    "digestSignatureAlgorithm": "SHA256withRSA",
                    "logFiles": [],
                }
                yield SampleFile(folder + name, gzip.compress(orjson.dumps(digest), mtime=0), 0)
        if insight and stream_index == 0:
            folder = day_prefix(account, region, day, key_prefix, organization_id, FileKind.INSIGHT.value)
            name = file_name(account, region, f"{start:%Y%m%dT%H%MZ}_{_unique_id(rng)}", FileKind.INSIGHT.value)
            insight_event = {
                "eventVersion": "1.07",
                "eventTime": _iso(start + timedelta(hours=3)),
                "awsRegion": region,
                "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
                "eventType": "AwsCloudTrailInsight",
                "recipientAccountId": account,
                "sharedEventID": str(uuid.UUID(int=rng.getrandbits(128))),
                "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "insightType": "ApiCallRateInsight"},
                "eventCategory": "Insight",
            }
            yield SampleFile(folder + name, gzip.compress(orjson.dumps({"Records": [insight_event]}), mtime=0), 1)


def write_files(out: Path, files: Iterator[SampleFile]) -> tuple[int, int]:
    """Write generated objects under ``out`` (keys become paths); returns (files, records)."""
    written = events = 0
    for item in files:
        path = out / item.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.body)
        written += 1
        events += item.records
    return written, events
