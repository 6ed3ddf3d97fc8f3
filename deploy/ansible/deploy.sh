#!/usr/bin/env bash
# Deploy, update, roll back or inspect an Inferhub fleet with Ansible.
#
#   ./deploy.sh <environment> <deploy|update|rollback|status> [extra ansible-playbook arguments]
#
#   deploy    everything, in dependency order with health checks (site.yml)
#   update    only the Inferhub release: install, migrate, rolling restart (site.yml --tags inferhub)
#   rollback  back to the previously active release, one replica at a time (rollback.yml)
#   status    read-only state of replicas, engines and the front (status.yml)
#
# environment: dev, staging or production (environments/<environment>.yml). Secrets are read from
# environments/<environment>.vault.yml when it exists (ansible-vault; pass --ask-vault-pass or set
# ANSIBLE_VAULT_PASSWORD_FILE). INVENTORY overrides the inventory file (default: inventory.ini).
set -euo pipefail

usage() {
  echo "usage: $0 <dev|staging|production> <deploy|update|rollback|status> [ansible-playbook args...]" >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
environment="$1"
action="$2"
shift 2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export ANSIBLE_CONFIG="$here/ansible.cfg"

env_file="environments/${environment}.yml"
[ -f "$env_file" ] || { echo "unknown environment '$environment': no $env_file" >&2; usage; }

args=(-i "${INVENTORY:-inventory.ini}" -e "@${env_file}")
vault_file="environments/${environment}.vault.yml"
[ -f "$vault_file" ] && args+=(-e "@${vault_file}")

case "$action" in
  deploy) playbook=(site.yml) ;;
  update) playbook=(site.yml --tags inferhub) ;;
  rollback) playbook=(rollback.yml) ;;
  status) playbook=(status.yml) ;;
  *) echo "unknown action '$action'" >&2; usage ;;
esac

if [ "$environment" = production ] && [ "$action" != status ] && [ -t 0 ]; then
  read -r -p "About to $action PRODUCTION. Type 'production' to continue: " answer
  [ "$answer" = production ] || { echo "aborted" >&2; exit 1; }
fi

exec ansible-playbook "${args[@]}" "${playbook[@]}" "$@"
