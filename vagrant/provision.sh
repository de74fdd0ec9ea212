#!/usr/bin/env bash
# The test lab in the Vagrant VM (`vagrant up`): the runtime set-up, then the test tools,
# the same two scripts `make setup` and `make test` run on any host. As root:
#     vagrant/provision.sh [PROJECT_DIR]
set -euo pipefail
PROJECT_DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
bash "$PROJECT_DIR/setup/runtime.sh" "$PROJECT_DIR"
bash "$PROJECT_DIR/tests/setup.sh" "$PROJECT_DIR"
