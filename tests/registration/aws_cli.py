#!/usr/bin/env python3
"""A stand-in of the AWS CLI v2 for the calls of userdata/console-forwards.sh, through boto3 to
the endpoint of AWS_ENDPOINT_URL (moto in server mode here), so the script runs unchanged.

What it reproduces of the CLI (AWS CLI v2 Command Reference): the global options --region,
--cli-connect-timeout, --cli-read-timeout, --query and --output; `--query X --output text`
prints the value at X (the queries the script uses: Parameter.Value, SecretString); a service
error is printed as "An error occurred (<Code>) when calling the <Operation> operation:
<Message>" with exit status 254; an option it does not know ends it with status 252, as the
CLI does with a usage error. Commands: ssm get-parameter (--name), ssm put-parameter (--name,
--value, --type, --overwrite), secretsmanager get-secret-value (--secret-id).
"""

import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

GLOBAL = {"--region", "--cli-connect-timeout", "--cli-read-timeout", "--query", "--output"}
COMMANDS = {("ssm", "get-parameter"): {"--name"}, ("ssm", "put-parameter"): {"--name", "--value", "--type"},
            ("secretsmanager", "get-secret-value"): {"--secret-id"}}
FLAGS = {("ssm", "put-parameter"): {"--overwrite"}}
QUERIES = {"Parameter.Value": lambda r: r["Parameter"]["Value"], "SecretString": lambda r: r["SecretString"]}


def main(argv):
    options, words, flags = {}, [], set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and a not in {"--overwrite"}:
            options[a] = argv[i + 1]
            i += 2
        elif a.startswith("--"):
            flags.add(a)
            i += 1
        else:
            words.append(a)
            i += 1
    command = tuple(words)
    known = COMMANDS.get(command)
    unknown = set(options) - GLOBAL - (known or set()) | flags - FLAGS.get(command, set())
    if known is None or unknown or options.get("--output", "text") != "text":
        sys.stderr.write(f"aws: error: unsupported here: {' '.join(argv)}\n")
        return 252
    config = Config(connect_timeout=int(options.get("--cli-connect-timeout", 60)),
                    read_timeout=int(options.get("--cli-read-timeout", 60)), retries={"max_attempts": 1})
    client = boto3.client(command[0], region_name=options["--region"], config=config)
    try:
        if command == ("ssm", "get-parameter"):
            result = client.get_parameter(Name=options["--name"])
        elif command == ("ssm", "put-parameter"):
            result = client.put_parameter(Name=options["--name"], Value=options["--value"],
                                          Type=options.get("--type", "String"), Overwrite="--overwrite" in flags)
        else:
            result = client.get_secret_value(SecretId=options["--secret-id"])
    except ClientError as e:
        err = e.response["Error"]
        sys.stderr.write(f"\nAn error occurred ({err.get('Code')}) when calling the {e.operation_name} operation: "
                         f"{err.get('Message', '')}\n")
        return 254
    if "--query" in options:
        print(QUERIES[options["--query"]](result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
