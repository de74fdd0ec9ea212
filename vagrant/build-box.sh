#!/usr/bin/env bash
# Build a local Vagrant box for the libvirt provider, offline from Debian packages only
# (for machines that cannot download public boxes). Run as root:
#
#     SURGEWATCH_SUITE=bookworm|trixie vagrant/build-box.sh [--force]
#
# Result, cached outside the repository and rebuilt only when missing, when this script or
# tests/packages.txt has changed since, or with --force:
#     $SURGEWATCH_BOX_CACHE/surgewatch-$SUITE.box             libvirt box: metadata.json, Vagrantfile, box.img
#     $SURGEWATCH_BOX_CACHE/vagrant_ed25519-$SUITE{,.pub}     the ssh key pair made for this box
#     $SURGEWATCH_BOX_CACHE/vmlinuz-$SUITE                    its kernel (vm-test.sh probes KVM with it)
# The box's own Vagrantfile points config.ssh.private_key_path at that key: no key is
# shipped in the repository, and no well-known insecure key is accepted by the VM.
#
# What is in it: Debian $SUITE (mmdebstrap), linux-image-amd64, grub-pc on an
# MBR-partitioned disk, openssh-server, sudo, rsync; a "vagrant" user with password-less
# sudo; and the test tools of tests/packages.txt, baked in here where dpkg runs at native
# speed instead of under the VM's software CPU (their servers' units disabled). Nothing of
# surgewatch's runtime (bcc, kernel headers): setup/runtime.sh installs that inside the VM,
# from this bare state, as on a user's host, and the VM checks exactly what it installed.
#
# Environment: SURGEWATCH_SUITE (bookworm, the default, or trixie), SURGEWATCH_BOX_CACHE
# (default /var/cache/surgewatch/boxes), SURGEWATCH_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), SURGEWATCH_BOX_DISK_GB (virtual disk size, default 16).
set -euo pipefail
{   # the whole script is read before it runs: editing it during a run cannot derail the run

CACHE="${SURGEWATCH_BOX_CACHE:-/var/cache/surgewatch/boxes}"
MIRROR="${SURGEWATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SURGEWATCH_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
DISK_GB="${SURGEWATCH_BOX_DISK_GB:-16}"
SUITE="${SURGEWATCH_SUITE:-bookworm}"
HERE="$(cd "$(dirname "$0")" && pwd -P)"
PACKAGES_TXT="$HERE/../tests/packages.txt"
BOX="$CACHE/surgewatch-$SUITE.box"
KEY="$CACHE/vagrant_ed25519-$SUITE"
KERNEL_COPY="$CACHE/vmlinuz-$SUITE"
start=$SECONDS
say() { printf 'build-box [%4ds]: %s\n' "$((SECONDS - start))" "$*"; }
die() { printf 'build-box: %s\n' "$*" >&2; exit 1; }

force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    *) die "usage: $0 [--force]" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (loop devices, mounts, chroot); try: sudo $0"
# The build's mounts live in a mount namespace of its own. A namespace another process
# makes meanwhile with private propagation (`unshare -m --propagation private`, as tests
# do) would otherwise hold a copy of the box's root mount: our umount then leaves the
# filesystem mounted there with its journal not written back, and GRUB, which does not
# replay the journal, boots the VM to its `grub>` prompt (seen: no grub.cfg, only
# grub.cfg.new, in a box built beside the privileged tests).
if [ -z "${SURGEWATCH_BOX_NS:-}" ]; then
    command -v unshare >/dev/null || die "missing unshare (apt-get install util-linux)"
    SURGEWATCH_BOX_NS=1 exec unshare -m --propagation private -- bash "$0" "$@"
fi
case "$SUITE" in
    bookworm|trixie) ;;
    *) die "SURGEWATCH_SUITE=$SUITE is not a suite this box is made for; use bookworm (Debian 12) or trixie (Debian 13)" ;;
esac
# The test tools baked in, and the units of theirs that must not start at boot.
TEST_PKGS="$(awk '!/^#/ && NF {print $1}' "$PACKAGES_TXT" | paste -sd, -)"
TEST_UNITS="$(awk '!/^#/ && NF > 1 {$1 = ""; print}' "$PACKAGES_TXT" | xargs)"

# The cached box is reused while its recipe (this script and the package list) is unchanged.
RECIPE="$(cat "$0" "$PACKAGES_TXT" | sha256sum | cut -c1-16)"
if [ $force -eq 0 ] && [ -s "$BOX" ] && [ -s "$KEY" ] && [ -s "$KEY.pub" ] && [ -s "$KERNEL_COPY" ] &&
   [ "$(cat "$CACHE/surgewatch-$SUITE.recipe" 2>/dev/null)" = "$RECIPE" ]; then
    say "cached box $BOX is present (use --force to rebuild)"
    exit 0
fi
[ ! -s "$BOX" ] || [ $force -eq 1 ] || say "the recipe (build-box.sh, tests/packages.txt) changed since the cached box was built: rebuilding"

for tool in mmdebstrap qemu-img sfdisk partx losetup mkfs.ext4 ssh-keygen tar blkid; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install mmdebstrap qemu-utils fdisk util-linux e2fsprogs openssh-client)"
done

mkdir -p "$CACHE"
work="$(mktemp -d /var/tmp/surgewatch-box.XXXXXX)"
root="$work/root"
raw="$work/disk.raw"
loop=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$root" ] && [ -d "$root" ]; then
        for m in dev/pts dev proc sys; do
            mountpoint -q "$root/$m" && umount -l "$root/$m"
        done
        mountpoint -q "$root" && umount "$root"
    fi
    if [ -n "$loop" ]; then
        partx -d "$loop" 2>/dev/null
        losetup -d "$loop"
    fi
    rm -rf "$work"
    [ $rc -eq 0 ] || printf 'build-box: FAILED (exit %d); nothing was cached\n' "$rc" >&2
}
trap cleanup EXIT

# 1. The ssh key pair: made here, kept only in the cache beside the box.
rm -f "$KEY" "$KEY.pub"
ssh-keygen -q -t ed25519 -N '' -C "surgewatch-vagrant-box" -f "$KEY"
chmod 600 "$KEY"

# 2. A raw disk with one bootable MBR partition, its partition visible through partx
#    (some kernels, this project's host included, do not scan loop partitions by themselves).
say "creating a ${DISK_GB} GiB disk"
truncate -s "${DISK_GB}G" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
loop="$(losetup -f --show "$raw")"
partx -a "$loop" 2>/dev/null || partx -u "$loop"
part="${loop}p1"
for _ in 1 2 3 4 5; do [ -b "$part" ] && break; sleep 1; done
[ -b "$part" ] || die "partition $part did not appear"
uuid="$(cat /proc/sys/kernel/random/uuid)"
mkfs.ext4 -q -U "$uuid" -L surgewatch-root "$part"
mkdir -p "$root"
mount "$part" "$root"

# 3. Debian into it (mmdebstrap keeps the baked servers from starting while it installs).
say "mmdebstrap $SUITE from $MIRROR with the test tools (takes a few minutes)"
rmdir "$root/lost+found"     # mmdebstrap wants an empty directory; mkfs.ext4 recreates nothing, fsck would
mmdebstrap --variant=important --components=main --quiet \
    --include=linux-image-amd64,grub-pc,openssh-server,sudo,rsync,ifupdown,isc-dhcp-client,ca-certificates,"$TEST_PKGS" \
    "$SUITE" "$root" \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main"
mkdir -p "$root/lost+found"; chmod 700 "$root/lost+found"
kver="$(ls "$root/lib/modules" | sort -V | tail -1)"
[ ! -e "$root/usr/src/linux-headers-$kver" ] || die "kernel headers were baked into the box: a package of tests/packages.txt pulls them in"
[ ! -e "$root/usr/lib/python3/dist-packages/bcc" ] || die "bcc was baked into the box: a package of tests/packages.txt pulls in python3-bpfcc"
# (libbpf1 excepted: iproute2, priority important, depends on it, so every box has it)
for p in $(sh "$HERE/../setup/depends.sh" "$HERE/.."); do
    [ "$p" != libbpf1 ] || continue
    [ ! -e "$root/var/lib/dpkg/info/$p.list" ] ||
        die "$p was baked into the box: the runtime set-up must install it (a package of tests/packages.txt is or pulls it in)"
done
say "installed kernel $kver and the test tools"
# A copy of the kernel lets vm-test.sh check that KVM really boots it before choosing KVM.
cp "$root/boot/vmlinuz-$kver" "$KERNEL_COPY.tmp" && mv "$KERNEL_COPY.tmp" "$KERNEL_COPY"

# 4. Configure the system.
say "configuring users, ssh, network, grub"
echo surgewatch-vm > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	surgewatch-vm
::1		localhost ip6-localhost ip6-loopback
EOF
cat > "$root/etc/fstab" <<EOF
UUID=$uuid	/	ext4	errors=remount-ro	0	1
EOF
cat > "$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
EOF
# One machine-id and one set of ssh host keys per VM, made at its first boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
cat > "$root/etc/ssh/sshd_config.d/vagrant.conf" <<'EOF'
UseDNS no
PasswordAuthentication no
EOF
chroot "$root" useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant:vagrant' | chroot "$root" chpasswd      # console login only; ssh takes the key
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"
install -d -m 700 "$root/home/vagrant/.ssh"
install -m 600 "$KEY.pub" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh

cat > "$root/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
EOF
for m in dev dev/pts proc sys; do mount --bind "/$m" "$root/$m"; done
echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | chroot "$root" debconf-set-selections
chroot "$root" grub-install --target=i386-pc --modules="part_msdos ext2" "$loop"
chroot "$root" update-grub 2>&1 | sed 's/^/  /'
# Without udev on the build host grub-mkconfig names the loop device; the VM sees a UUID.
sed -i -E "s#root=/dev/loop[0-9]+p1#root=UUID=$uuid#g" "$root/boot/grub/grub.cfg"
grep -q "root=UUID=$uuid" "$root/boot/grub/grub.cfg" || die "grub.cfg does not boot root=UUID=$uuid"
# The baked servers stay down at boot (tests start their own), and no timer runs apt in
# the background to hold dpkg's lock while the runtime set-up installs.
# shellcheck disable=SC2086
chroot "$root" systemctl disable $TEST_UNITS apt-daily.timer apt-daily-upgrade.timer 2>&1 | sed 's/^/  /'
# A throw-away test VM under a software CPU: make dpkg cheaper for provisioning. No man-db
# index rebuild after every install, no fsync per unpacked file, no translated indexes.
echo 'man-db man-db/auto-update boolean false' | chroot "$root" debconf-set-selections
rm -f "$root/var/lib/man-db/auto-update"
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/surgewatch-unsafe-io"
echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/90surgewatch-no-translations"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/log/*.log
for m in dev/pts dev proc sys; do umount "$root/$m"; done
umount "$root"
partx -d "$loop" 2>/dev/null || true
losetup -d "$loop"
# A loop device still attached after -d is still in use (autoclear): the filesystem is
# mounted somewhere yet, and the image would not be what GRUB needs.
[ -z "$(losetup -j "$raw")" ] || die "the box's disk is still in use after unmounting it ($(losetup -j "$raw")); nothing was cached"
loop=""

# 5. Pack: qcow2 plus the libvirt box metadata and a Vagrantfile that names the key.
say "converting to qcow2 and packing the box"
qemu-img convert -O qcow2 "$raw" "$work/box.img"
rm -f "$raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$DISK_GB" > "$work/metadata.json"
cat > "$work/Vagrantfile" <<EOF
# Made by surgewatch's vagrant/build-box.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ): Debian $SUITE, kernel $kver.
Vagrant.configure("2") do |config|
  config.ssh.username = "vagrant"
  config.ssh.private_key_path = "$KEY"
  config.ssh.insert_key = false
end
EOF
tar -C "$work" -cf "$BOX.tmp" metadata.json Vagrantfile box.img
mv "$BOX.tmp" "$BOX"
echo "$kver" > "$CACHE/surgewatch-$SUITE.kernel"
echo "$RECIPE" > "$CACHE/surgewatch-$SUITE.recipe"
say "built $BOX ($(du -h "$BOX" | cut -f1), kernel $kver)"
exit 0
}
