#!/usr/bin/env bash
# Validate every Kubernetes manifest in deploy/k8s/ offline against the API schemas of one
# Kubernetes release, with the `kubernetes-validate` package from PyPI (pinned; installed into
# its own venv under target/, so nothing is installed system-wide). The schemas ship inside the
# package: no cluster and no network are needed past the pip install.
#
#   bash tools/validate_k8s.sh [KUBERNETES_VERSION]     (default 1.30)
#
# --strict also rejects fields the schema does not know (a misspelt key would otherwise pass).
# Every manifest here uses built-in kinds (Job, Deployment, Service, HorizontalPodAutoscaler
# autoscaling/v2, PersistentVolumeClaim), so all of them are validated; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=${1:-1.30}
VENV=target/validate-k8s-venv
PIN=kubernetes-validate==1.37.0
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PIN"
fi
echo "kubernetes-validate $("$VENV/bin/pip" show kubernetes-validate | sed -n 's/^Version: //p'), schemas of Kubernetes $K8S_VERSION"
status=0
for f in deploy/k8s/*.yaml; do
  "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$f" || status=1
done
# The validator must reject a misspelt field, or the passes above prove nothing.
bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
sed 's/completionMode: Indexed/completionMod: Indexed/' deploy/k8s/transcribe-indexed-job.yaml >"$bad"
if "$VENV/bin/kubernetes-validate" --quiet --strict --kubernetes-version "$K8S_VERSION" "$bad" >/dev/null 2>&1; then
  echo "error: a misspelt field (completionMod) passed validation; the check is not strict" >&2
  status=1
else
  echo "a misspelt field (completionMod) is rejected, as it should be"
fi
exit $status
