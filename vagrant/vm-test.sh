#!/usr/bin/env bash
# `make vm-test`: the test suite inside a fresh Debian VM (Debian 12's kernel 6.1 or
# Debian 13's 6.12, with kprobes and function tracing), set up like any user's host.
#
#   host tools -> box (built offline once per suite, vagrant/build-box.sh) -> libvirt
#   driver -> libvirt daemons -> leftover VM removed -> vagrant up -> runtime set-up from
#   the bare box, checked (`make snapshot`) -> make test -> report copied to
#   build/vm-test/ -> vagrant destroy -> exit with the tests' status
#   (beside the boot: the container image's root, built here and copied in before the tests)
#
# Run as root. Exit status: the in-VM test command's status when it ran; 3 when the VM
# could not be made ready (tools, box, boot), with the phase named; 4 when the runtime
# set-up installed or changed anything it must not (build/vm-test/runtime-check/).
#
# Environment (all optional):
#   SURGEWATCH_LIBVIRT_DRIVER  kvm or qemu; default: kvm only when a KVM guest really boots
#                              here, else qemu (software CPU)
#   SURGEWATCH_SUITE           bookworm (Debian 12, default) or trixie (Debian 13): the box
#   SURGEWATCH_IMAGE_SUITE     the container image's Debian suite (default: SURGEWATCH_SUITE)
#   SURGEWATCH_BOX             use this box instead of building surgewatch/$SUITE-local
#   SURGEWATCH_BOX_CACHE       where build-box.sh keeps the box (default /var/cache/surgewatch/boxes)
#   SURGEWATCH_VM_TEST_CMD     command run as root in /surgewatch (default: make test)
#   SURGEWATCH_VM_KEEP=1       leave the VM running afterwards (cd vagrant && vagrant ssh)
#   SURGEWATCH_VM_OUT          report directory on the host (default build/vm-test)
#   SURGEWATCH_VM_CPUS, SURGEWATCH_VM_MEMORY, SURGEWATCH_VM_BOOT_TIMEOUT: see Vagrantfile
set -uo pipefail
{   # the whole script is read before it runs: editing it during a run cannot derail the run

HERE="$(cd "$(dirname "$0")" && pwd -P)"
PROJECT_DIR="$(cd "$HERE/.." && pwd -P)"
OUT="${SURGEWATCH_VM_OUT:-$PROJECT_DIR/build/vm-test}"
CACHE="${SURGEWATCH_BOX_CACHE:-/var/cache/surgewatch/boxes}"
SUITE="${SURGEWATCH_SUITE:-bookworm}"
LOCAL_BOX="surgewatch/$SUITE-local"
LOCAL_BOX_FILE="$CACHE/surgewatch-$SUITE.box"
TEST_CMD="${SURGEWATCH_VM_TEST_CMD:-make test}"
VM_DIR=/surgewatch
VM_OUT="$VM_DIR/build/vm-test"
# The same libvirt domain name as the Vagrantfile's default_prefix + "default".
DOMAIN="surgewatch-$(printf '%s' "$PROJECT_DIR" | sha1sum | cut -c1-8)-default"

export VAGRANT_CWD="$HERE"
export VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_CHECKPOINT_DISABLE=1          # no version check against the vendor's servers
export VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export VAGRANT_NO_COLOR=1
export LIBVIRT_DEFAULT_URI=qemu:///system
export DEBIAN_FRONTEND=noninteractive

T0=$SECONDS
declare -a TIMINGS=()
fmt() { printf '%dm%02ds' "$(($1 / 60))" "$(($1 % 60))"; }
say() { printf 'vm-test [%7s] %s\n' "$(fmt $((SECONDS - T0)))" "$*"; }
phase_start=0
phase() { phase_name="$1"; phase_start=$SECONDS; say "$1: ${2:-}"; }
phase_done() {
    local d=$((SECONDS - phase_start))
    TIMINGS+=("$phase_name $d")
    say "$phase_name: done in $(fmt $d)${1:+ ($1)}"
}
fail() {
    say "FAILED in phase '$phase_name': $*"
    exit 3
}

[ "$(id -u)" -eq 0 ] || { echo "vm-test: run as root (libvirt, loop devices, apt); try: sudo $0" >&2; exit 2; }
mkdir -p "$OUT"
rm -rf "$OUT"/junit*.xml "$OUT"/make-test.log "$OUT"/vm-info.txt "$OUT"/console.log "$OUT"/runtime-check

# --- cleanup: whatever happens, remove the VM and stop only the daemons started here --
STARTED_PIDS=()
VM_UP=0
TEST_RC=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$VM_UP" -eq 1 ] && [ "${SURGEWATCH_VM_KEEP:-0}" != 1 ]; then
        phase destroy "vagrant destroy -f"
        vagrant destroy -f >>"$OUT/vagrant.log" 2>&1 || say "vagrant destroy failed (see $OUT/vagrant.log)"
        remove_leftover_domain
        phase_done
    elif [ "$VM_UP" -eq 1 ]; then
        say "SURGEWATCH_VM_KEEP=1: VM left running (cd vagrant && vagrant ssh; vagrant destroy -f)"
    fi
    if [ "${SURGEWATCH_VM_KEEP:-0}" != 1 ]; then
        for entry in "${STARTED_PIDS[@]}"; do
            pid="${entry%%:*}" name="${entry#*:}"
            # only that very process: still alive and still the daemon this run started
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || continue
            kill "$pid" && say "stopped $name (pid $pid, started by this run)"
        done
    fi
    {
        for t in "${TIMINGS[@]}"; do echo "$t"; done
        echo "total $((SECONDS - T0))"
    } > "$OUT/timings.txt"
    say "timings (s): $(tr '\n' ' ' < "$OUT/timings.txt")"
    if [ -n "$TEST_RC" ]; then
        say "tests exited $TEST_RC; report in $OUT"
        exit "$TEST_RC"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# --- 1. host tools ---------------------------------------------------------------------
phase tools "checking host packages"
HOST_PKGS=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
           qemu-system-x86 qemu-utils dnsmasq-base iptables mmdebstrap fdisk rsync openssh-client)
missing=()
for p in "${HOST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$OUT/apt.log" 2>&1 || { tail -20 "$OUT/apt.log"; fail "apt-get install failed (see $OUT/apt.log)"; }
fi
phase_done "vagrant $(vagrant --version 2>/dev/null | awk '{print $2}')"

# --- 2. libvirt daemons ------------------------------------------------------------------
phase libvirt "making sure libvirtd answers"
start_daemon() {   # name pidfile: start "$name -d" unless its pidfile names a live process
    local name="$1" pidfile="$2" pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
    "/usr/sbin/$name" -d || fail "$name -d failed"
    for _ in $(seq 50); do
        [ -s "$pidfile" ] && pid="$(cat "$pidfile")" && kill -0 "$pid" 2>/dev/null && break
        sleep 0.2
    done
    [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null || fail "$name did not write a live pid to $pidfile"
    STARTED_PIDS=("$pid:$name" "${STARTED_PIDS[@]}")     # stopped in reverse order
    say "started $name (pid $pid)"
}
if ! virsh version >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl start virtlogd.socket libvirtd.socket libvirtd.service 2>/dev/null ||
            systemctl start libvirtd || fail "systemctl start libvirtd failed"
    else
        say "no init system manages libvirt here: starting its daemons by hand"
        start_daemon virtlogd /run/virtlogd.pid
        start_daemon libvirtd /run/libvirtd.pid
    fi
    for _ in $(seq 300); do virsh version >/dev/null 2>&1 && break; sleep 0.2; done
    virsh version >/dev/null 2>&1 || fail "libvirtd does not answer on $LIBVIRT_DEFAULT_URI"
fi
phase_done

# --- 3. leftovers of an earlier run -------------------------------------------------------
remove_leftover_domain() {
    if virsh dominfo "$DOMAIN" >/dev/null 2>&1; then
        say "removing libvirt domain $DOMAIN"
        virsh destroy "$DOMAIN" >/dev/null 2>&1
        virsh undefine "$DOMAIN" --remove-all-storage >/dev/null 2>&1 || virsh undefine "$DOMAIN" >/dev/null 2>&1
    fi
    if virsh vol-info --pool default "$DOMAIN.img" >/dev/null 2>&1; then
        virsh vol-delete --pool default "$DOMAIN.img" >/dev/null 2>&1
    fi
}
phase leftovers "removing any VM left by an earlier run ($DOMAIN)"
: > "$OUT/vagrant.log"
if [ -d "$HERE/.vagrant/machines" ]; then
    timeout 300 vagrant destroy -f >>"$OUT/vagrant.log" 2>&1 || say "vagrant destroy of the old state failed; removing by name"
fi
remove_leftover_domain
rm -rf "$HERE/.vagrant/machines/default/libvirt"
phase_done

# --- 4. the box ----------------------------------------------------------------------------
if [ -n "${SURGEWATCH_BOX:-}" ]; then
    phase box "using box $SURGEWATCH_BOX"
    BOX="$SURGEWATCH_BOX"
    phase_done
else
    phase box "building or reusing the local box in $CACHE"
    BOX="$LOCAL_BOX"
    export SURGEWATCH_BOX_CACHE="$CACHE" SURGEWATCH_SUITE="$SUITE"
    bash "$HERE/build-box.sh" || fail "vagrant/build-box.sh failed"
    boxdir="${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/${LOCAL_BOX//\//-VAGRANTSLASH-}/0/libvirt"
    if [ ! -e "$boxdir/.surgewatch-added" ] || [ "$LOCAL_BOX_FILE" -nt "$boxdir/.surgewatch-added" ]; then
        say "adding $LOCAL_BOX to vagrant"
        # Volumes of an older build of this box would otherwise stay in the pool forever.
        for vol in $(virsh vol-list --pool default 2>/dev/null | awk 'NR > 2 {print $1}' |
                     grep "^${LOCAL_BOX//\//-VAGRANTSLASH-}_vagrant_box_image_" || true); do
            virsh vol-delete --pool default "$vol" >/dev/null 2>&1 && say "deleted old box volume $vol"
        done
        vagrant box add --force --name "$LOCAL_BOX" "$LOCAL_BOX_FILE" >>"$OUT/vagrant.log" 2>&1 ||
            fail "vagrant box add failed (see $OUT/vagrant.log)"
        touch "$boxdir/.surgewatch-added"
    fi
    phase_done "Debian $SUITE, kernel $(cat "$CACHE/surgewatch-$SUITE.kernel" 2>/dev/null || echo '?')"
fi
export SURGEWATCH_BOX="$BOX"

# --- 5. the libvirt driver ---------------------------------------------------------------
# /dev/kvm existing is not enough: in a nested guest KVM may refuse the CPU state QEMU sets
# (observed: "failed to set MSR", QEMU aborts) or not boot a kernel. So boot the box's
# kernel under KVM until it panics for want of a root disk, which proves it runs.
kvm_works() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || { say "no usable /dev/kvm"; return 1; }
    local kernel="$CACHE/vmlinuz-$SUITE" log="$OUT/kvm-probe.log"
    if [ ! -s "$kernel" ]; then
        say "no kernel at $kernel to probe KVM with (public box in use?): trying KVM without a probe"
        return 0
    fi
    # (in a subshell, so that QEMU aborting is reported in the log, not by this shell)
    ( timeout 120 qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -nodefaults -display none \
        -no-reboot -serial "file:$log" -kernel "$kernel" \
        -append "console=ttyS0 panic=-1 root=/dev/nonexistent"; : ) >"$log.stderr" 2>&1
    if grep -q 'Kernel panic - not syncing: VFS' "$log" 2>/dev/null; then return 0; fi
    say "KVM probe failed: $(grep -m2 -v Aborted "$log.stderr" | tr '\n' ' ' | cut -c1-300)"
    return 1
}
phase driver "choosing the libvirt driver"
if [ -n "${SURGEWATCH_LIBVIRT_DRIVER:-}" ]; then
    DRIVER="$SURGEWATCH_LIBVIRT_DRIVER"
elif kvm_works; then
    DRIVER=kvm
else
    DRIVER=qemu
fi
export SURGEWATCH_LIBVIRT_DRIVER="$DRIVER"
# the tests' "must be quick" bounds, scaled for an emulated CPU (tests/owncgroup.py)
TIME_SCALE=1
[ "$DRIVER" = qemu ] && TIME_SCALE=4
phase_done "$DRIVER$([ "$DRIVER" = qemu ] && echo ': software CPU (TCG), slow')"

# vagrant's output, indented, into the log too; without the box upload's progress meter
# (thousands of carriage-return updates on one line).
show_vagrant() {
    local line
    stdbuf -oL tr '\r' '\n' | while IFS= read -r line; do
        line="${line//$'\e'[K/}"
        [[ -z "$line" || "$line" =~ ^Progress:\ [0-9]+%$ ]] && continue
        printf '    [%s] %s\n' "$(fmt $((SECONDS - T0)))" "$line"
    done | tee -a "$OUT/vagrant.log"
}

# --- 5b. the .deb and the container image's root, built here at native speed while the VM
# boots (debian/make-image --rootfs: make deb with lintian, then the .deb in a minimal Debian
# root; tests/e2e/test_deb_package.py installs the one, test_container_image.py imports the
# other into the VM's podman). A failure here is those tests'.
IMAGE_SUITE="${SURGEWATCH_IMAGE_SUITE:-$SUITE}"
SURGEWATCH_IMAGE_SUITE="$IMAGE_SUITE" bash "$PROJECT_DIR/debian/make-image" --rootfs "$PROJECT_DIR" \
    >"$OUT/image.log" 2>&1 &
IMAGE_PID=$!
IMAGE_T0=$(date +%s)

# --- 6. boot -------------------------------------------------------------------------------
export SURGEWATCH_VM_CONSOLE_LOG="$OUT/console.log"
phase boot "vagrant up --no-provision (box $BOX, driver $DRIVER)"
VM_UP=1
# vagrant-libvirt gives a running domain 2 s to show its IP address in the DHCP leases and
# calls it 'inaccessible' otherwise, which ends `vagrant up` (seen on a loaded host: the
# guest was still booting). So the domain is kept on error and, while it still runs,
# `vagrant up` waits for it again.
for attempt in 1 2 3; do
    vagrant up --provider=libvirt --no-provision --no-destroy-on-error 2>&1 | show_vagrant
    [ "${PIPESTATUS[0]}" -eq 0 ] && break
    state="$(virsh domstate "$DOMAIN" 2>&1 | head -1)"
    [ "$state" = running ] && [ "$attempt" -lt 3 ] ||
        fail "vagrant up failed (domain: $state; see $OUT/vagrant.log and $OUT/console.log)"
    say "vagrant up failed, the domain still runs: waiting for it again (attempt $((attempt + 1)) of 3)"
done
vagrant ssh-config > "$OUT/ssh-config" 2>>"$OUT/vagrant.log" || fail "vagrant ssh-config failed"
vm() { ssh -F "$OUT/ssh-config" -o LogLevel=ERROR -o ConnectTimeout=60 default "$@"; }
phase_done

# --- 7. the runtime set-up from the bare box ------------------------------------------------
# Only the host-ca provisioner runs (when the host trusts extra CAs); setup/runtime.sh then
# runs through `make snapshot`, checked against apt's plan (vagrant/check-runtime-setup.sh).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null || compgen -G "/usr/local/share/ca-certificates/*/*.crt" >/dev/null; then
    phase host-ca "vagrant provision --provision-with host-ca"
    vagrant provision --provision-with host-ca 2>&1 | show_vagrant
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the host-ca provisioner failed (see $OUT/vagrant.log)"
    phase_done
fi
phase runtime "make snapshot from the bare box: exactly the runtime packages, no unit touched"
vm -n "cd $VM_DIR && sudo -H bash vagrant/check-runtime-setup.sh $VM_OUT/runtime-check" 2>&1 | sed -u 's/^/    /'
RUNTIME_RC=${PIPESTATUS[0]}
phase_done "exit $RUNTIME_RC"

vm -n 'set +e; . /etc/os-release; echo "debian: $VERSION_ID ($VERSION_CODENAME)"; echo "kernel: $(uname -r)"
  echo "headers: $(readlink -f /lib/modules/$(uname -r)/build) ($(dpkg-query -W -f="\${Version}" linux-headers-$(uname -r) 2>/dev/null || echo "no package"))"
  echo "kprobes: $(grep -q "^CONFIG_KPROBES=y" /boot/config-$(uname -r) && echo yes || echo no)"
  echo "bcc: $(dpkg-query -W -f="\${Version}" python3-bpfcc), libbpf: $(dpkg-query -W -f="\${Version}" libbpf1), python: $(python3 -V)"
  echo "cpus: $(nproc) ($(grep -q -w avx2 /proc/cpuinfo && echo "AVX2: x86-64-v3" || { grep -q -w sse4_2 /proc/cpuinfo && echo "SSE4.2: x86-64-v2" || echo "no SSE4.2: below x86-64-v2"; })), memory: $(free -m | awk "/Mem:/ {print \$2}") MiB"' \
    > "$OUT/vm-info.txt" 2>&1
sed 's/^/    /' "$OUT/vm-info.txt"

# --- 7b. the image's root into the VM ------------------------------------------------------
phase image "the container image's root (built on the host) into the VM"
if wait "$IMAGE_PID"; then
    rootfs="$(sed -n 's/^image: built //p' "$OUT/image.log")"
    deb="$(sed -n 's/^deb: built //p' "$OUT/image.log")"
    # the .deb too (the package test installs it), keeping its time: the test builds its
    # own when a source is newer
    vm -n "sudo mkdir -p $VM_DIR/build/image" &&
        vm -o Compression=no "sudo sh -c 'cat > $VM_DIR/build/image/$(basename "$rootfs")'" < "$rootfs" &&
        vm -o Compression=no "sudo sh -c 'cat > $VM_DIR/build/$(basename "$deb") && touch -d @$(stat -c %Y "$deb") $VM_DIR/build/$(basename "$deb")'" < "$deb" ||
        say "copying $rootfs and $deb into the VM failed"
    phase_done "$(basename "$rootfs") and $(basename "$deb"), built beside the boot in $(($(stat -c %Y "$OUT/image.log") - IMAGE_T0)) s"
else
    sed 's/^/    /' "$OUT/image.log" | tail -5
    phase_done "debian/make-image --rootfs failed (see $OUT/image.log); the image test will fail"
fi

# --- 8. tests ----------------------------------------------------------------------------
phase tests "$TEST_CMD (as root in $VM_DIR)"
# As in CI, privileged tests must run, not skip: the VM is root with BPF and kprobes.
vm -n "sudo mkdir -p $VM_OUT && cd $VM_DIR && sudo -H env SURGEWATCH_REQUIRE_PRIVILEGED=1 SURGEWATCH_TEST_TIME_SCALE=$TIME_SCALE PYTEST_ADDOPTS='--junitxml=$VM_OUT/junit.xml -o junit_family=xunit2' $TEST_CMD" \
    2>&1 | tee "$OUT/make-test.log" | sed -u 's/^/    /'
TEST_RC=${PIPESTATUS[0]}
phase_done "exit $TEST_RC"
if [ "$TEST_RC" -eq 0 ] && [ "$RUNTIME_RC" -ne 0 ]; then
    say "the tests passed, but the runtime set-up check failed (build/vm-test/runtime-check/)"
    TEST_RC=4
fi

# --- 9. the report ---------------------------------------------------------------------------
phase report "copying $VM_OUT out to $OUT"
if vm -n "sudo tar -C $VM_OUT -cf - ." | tar -C "$OUT" -xf -; then
    ls "$OUT"/junit*.xml >/dev/null 2>&1 || say "no junit xml was written (did the test command run pytest?)"
    phase_done "$(ls "$OUT" | tr '\n' ' ')"
else
    say "copying the report failed"
    [ "$TEST_RC" -ne 0 ] || TEST_RC=3
fi
# cleanup (trap) destroys the VM, stops our daemons and exits with TEST_RC.
exit    # the trap (cleanup) exits with the tests' status
}
