#!/usr/bin/env bash
# Runs the kubernetes launcher's e2e cases (test/e2e/kubernetes.test.ts) against a REAL cluster:
# a throwaway kind (or k3d) cluster whose node gets gVisor (runsc + containerd-shim-runsc-v1) and
# a RuntimeClass "gvisor", the test images loaded into it, a namespace, a service account with
# exactly docs/scale-out.md's least-privilege Role that the tests run as, and a read-only one for
# the "too few permissions" case. NOT run in CI (CI has no Docker daemon and no
# cluster; there the same file runs against the API stand-in in test/fixtures/k8s-standin).
#
#   npm run build && bash scripts/k8s-smoke.sh
#
# Needs: root or a Docker user, docker, kubectl, kind (or k3d with K8S_SMOKE_TOOL=k3d), curl,
# sha512sum, buildah, node; network access to storage.googleapis.com for gVisor's release
# binaries (or K8S_SMOKE_GVISOR_DIR holding runsc and containerd-shim-runsc-v1).
#
# Environment:
#   K8S_SMOKE_TOOL       kind (default) or k3d
#   K8S_SMOKE_CLUSTER    cluster name (default agent-smoke); an existing one is reused
#   K8S_SMOKE_NAMESPACE  namespace for the test pods (default agent-e2e)
#   K8S_SMOKE_KEEP=1     keep the cluster afterwards (default: delete it if this script made it)
#   K8S_SMOKE_GVISOR_DIR directory with runsc and containerd-shim-runsc-v1 (default: download)
#   GVISOR_RELEASE       gVisor release path (default release/latest)
#   AGENT_TEST_IMAGE_STORE  the test image store (default /var/tmp/agent-test-images)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool=${K8S_SMOKE_TOOL:-kind}
cluster=${K8S_SMOKE_CLUSTER:-agent-smoke}
ns=${K8S_SMOKE_NAMESPACE:-agent-e2e}
store=${AGENT_TEST_IMAGE_STORE:-/var/tmp/agent-test-images}
release=${GVISOR_RELEASE:-release/latest}
images=(localhost/agent/python:3.13)

say() { echo "k8s-smoke: $*" >&2; }
die() {
  say "$*"
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"
}

case "$tool" in
  kind) need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
  k3d) need k3d "https://k3d.io/#installation" ;;
  *) die "K8S_SMOKE_TOOL must be kind or k3d (got $tool)" ;;
esac
need docker "kind and k3d run their nodes as Docker containers"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need buildah "the test images are exported from its store"
need node "Node 20"
[ -n "${K8S_SMOKE_GVISOR_DIR:-}" ] || need curl "to download gVisor"
[ -n "${K8S_SMOKE_GVISOR_DIR:-}" ] || need sha512sum "to check gVisor's downloads"
docker info >/dev/null 2>&1 || die "docker does not answer (is the daemon running, may this user use it?)"
[ -d "$root/packages/cli/dist/commands" ] || die "packages/cli is not built: run npm run build first"
[ -f "$store/storage.conf" ] || die "no test image store at $store (npm test builds it, or: AGENT_STATE_DIR=\$(mktemp -d) AGENT_IMAGE_STORE=$store bash scripts/build-images.sh)"

work=$(mktemp -d /tmp/k8s-smoke-XXXXXX)
made=0
cleanup() {
  if [ "$made" = 1 ] && [ "${K8S_SMOKE_KEEP:-0}" != 1 ]; then
    say "deleting cluster $cluster"
    if [ "$tool" = kind ]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    else k3d cluster delete "$cluster" >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT

kubeconfig=$work/admin.kubeconfig

# 1. The cluster; its containerd is told about the runsc handler (kind), or finds runsc itself (k3s).
if [ "$tool" = kind ]; then
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    say "reusing kind cluster $cluster"
  else
    cat >"$work/kind.yaml" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
EOF
    say "creating kind cluster $cluster"
    kind create cluster --name "$cluster" --config "$work/kind.yaml" --wait 120s
    made=1
  fi
  kind get kubeconfig --name "$cluster" >"$kubeconfig"
  nodes=$(kind get nodes --name "$cluster")
else
  if k3d cluster list "$cluster" >/dev/null 2>&1; then
    say "reusing k3d cluster $cluster"
  else
    say "creating k3d cluster $cluster"
    k3d cluster create "$cluster" --wait
    made=1
  fi
  k3d kubeconfig get "$cluster" >"$kubeconfig"
  nodes=$(docker ps --format '{{.Names}}' --filter "name=k3d-$cluster-(server|agent)-")
fi
export KUBECONFIG=$kubeconfig

# 2. gVisor in every node (https://gvisor.dev/docs/user_guide/containerd/quick_start/).
gdir=${K8S_SMOKE_GVISOR_DIR:-$work/gvisor}
if [ -z "${K8S_SMOKE_GVISOR_DIR:-}" ]; then
  mkdir -p "$gdir"
  url="https://storage.googleapis.com/gvisor/releases/$release/$(uname -m)"
  for bin in runsc containerd-shim-runsc-v1; do
    curl -fsSL -o "$gdir/$bin" "$url/$bin"
    curl -fsSL -o "$gdir/$bin.sha512" "$url/$bin.sha512"
    (cd "$gdir" && sha512sum -c "$bin.sha512" >/dev/null) || die "$bin: checksum mismatch"
  done
fi
for node in $nodes; do
  say "installing gVisor in node $node"
  for bin in runsc containerd-shim-runsc-v1; do
    docker cp "$gdir/$bin" "$node:/usr/local/bin/$bin"
    docker exec "$node" chmod 0755 "/usr/local/bin/$bin"
  done
  if [ "$tool" = kind ]; then docker exec "$node" systemctl restart containerd
  else docker restart "$node" >/dev/null; fi
done
kubectl wait --for=condition=Ready nodes --all --timeout=180s

# 3. The RuntimeClass, the namespace (Pod Security baseline enforced), the least-privilege service
# account the tests run as (docs/scale-out.md's Role, plus the two reads doctor makes) and a
# read-only one for the "too few permissions" case.
kubectl apply -f - <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor
handler: runsc
---
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels:
    pod-security.kubernetes.io/enforce: baseline
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: agent-e2e
  namespace: $ns
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: agent-sandboxes
  namespace: $ns
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [create, get, list, watch, delete]
  - apiGroups: [""]
    resources: [pods/exec]
    verbs: [create, get]
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [create, list, delete]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [create, list, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: agent-e2e
  namespace: $ns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: agent-sandboxes
subjects:
  - kind: ServiceAccount
    name: agent-e2e
    namespace: $ns
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: agent-e2e-doctor-reads
rules:
  - apiGroups: [""]
    resources: [namespaces]
    resourceNames: [$ns]
    verbs: [get]
  - apiGroups: [node.k8s.io]
    resources: [runtimeclasses]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: agent-e2e-doctor-reads
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: agent-e2e-doctor-reads
subjects:
  - kind: ServiceAccount
    name: agent-e2e
    namespace: $ns
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: agent-readonly
  namespace: $ns
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: agent-readonly
  namespace: $ns
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: agent-readonly
  namespace: $ns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: agent-readonly
subjects:
  - kind: ServiceAccount
    name: agent-readonly
    namespace: $ns
EOF

# A pod under gVisor must really run on runsc: dmesg inside gVisor names it.
kubectl -n "$ns" delete pod gvisor-probe --ignore-not-found >/dev/null
kubectl -n "$ns" run gvisor-probe --image=busybox:1.36 --restart=Never \
  --overrides='{"spec":{"runtimeClassName":"gvisor"}}' -- dmesg >/dev/null
kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/gvisor-probe --timeout=180s
kubectl -n "$ns" logs gvisor-probe | grep -q gVisor || die "the gvisor RuntimeClass does not run gVisor (dmesg does not say so)"
kubectl -n "$ns" delete pod gvisor-probe >/dev/null

server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$work/ca.crt"
# A kubeconfig that authenticates as service account $1 of the namespace, written to $2.
sa_kubeconfig() {
  local token
  token=$(kubectl -n "$ns" create token "$1" --duration=2h)
  KUBECONFIG=$2 kubectl config set-cluster smoke --server="$server" --certificate-authority="$work/ca.crt" --embed-certs=true >/dev/null
  KUBECONFIG=$2 kubectl config set-credentials "$1" --token="$token" >/dev/null
  KUBECONFIG=$2 kubectl config set-context smoke --cluster=smoke --user="$1" --namespace="$ns" >/dev/null
  KUBECONFIG=$2 kubectl config use-context smoke >/dev/null
}
runner=$work/agent-e2e.kubeconfig
limited=$work/readonly.kubeconfig
sa_kubeconfig agent-e2e "$runner"
sa_kubeconfig agent-readonly "$limited"

# 4. The images agent puts in its pods, under the same names (imagePullPolicy IfNotPresent).
for image in "${images[@]}"; do
  archive=$work/$(echo "$image" | tr '/:' '__').tar
  say "loading $image into the cluster"
  rm -f "$archive"
  CONTAINERS_STORAGE_CONF=$store/storage.conf buildah push "$image" "docker-archive:$archive:$image" >/dev/null
  if [ "$tool" = kind ]; then kind load image-archive "$archive" --name "$cluster"
  else k3d image import "$archive" --cluster "$cluster"; fi
done

# 5. The same e2e file, pointed at this cluster instead of the stand-in, as the least-privilege account.
say "running test/e2e/kubernetes.test.ts against $server (namespace $ns, service account agent-e2e)"
cd "$root"
AGENT_K8S_REAL_KUBECONFIG=$runner AGENT_K8S_REAL_NAMESPACE=$ns AGENT_K8S_REAL_LIMITED_KUBECONFIG=$limited \
  npx vitest run --project e2e test/e2e/kubernetes.test.ts
