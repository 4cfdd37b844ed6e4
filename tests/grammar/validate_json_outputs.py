#!/usr/bin/env python3
"""Independent check of constrained-decoding outputs: each text must parse as JSON and validate
against its schema with the python-jsonschema library (Debian's python3-jsonschema), formats
checked where the library can (date, email, uuid, ...).

Input (argv[1]): {"cases": [{"schema": {...}, "outputs": ["...", ...]}, ...]}
Prints one line per failure and a summary; exit status 1 if anything failed."""
import json
import sys

import jsonschema


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    checked = failed = 0
    for i, case in enumerate(cases):
        schema = case["schema"]
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        for text in case["outputs"]:
            checked += 1
            try:
                value = json.loads(text)
            except ValueError as e:
                failed += 1
                print(f"case {i}: not JSON ({e}): {text!r}")
                continue
            errors = list(validator.iter_errors(value))
            if errors:
                failed += 1
                print(f"case {i}: invalid ({errors[0].message}): {text!r}")
    print(f"{checked - failed} of {checked} outputs valid")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
