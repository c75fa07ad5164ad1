# Shared helpers for scripts/demo.sh, scripts/test.sh and scripts/bench-setup.sh.
# Sourced, not run. Everything here is idempotent.

# Packages both quick-start commands need: the BPF toolchain (clang, llvm,
# libelf, zlib, UAPI headers), the static-link archives (libelf-dev,
# zlib1g-dev), and the network tools the demo and the e2e tests drive;
# ca-certificates for cargo's HTTPS to crates.io and mount for bpffs. Written
# for a minimal Debian 12 (debootstrap --variant=minbase, what
# scripts/fresh-debian.sh checks): nothing here or in the tests runs procps
# tools (sysctl, ps, pgrep, pkill, /bin/kill); sysctls are written to
# /proc/sys from inside the namespace and kill is the shell builtin.
EP_APT_PACKAGES=(build-essential gcc clang llvm libelf-dev zlib1g-dev pkg-config linux-libc-dev
    iproute2 iptables nftables ethtool python3 iperf3 util-linux mount file ca-certificates)

# The other architecture's packages (scripts/build-packages.sh builds amd64
# and arm64): Debian's cross gcc and libc (links the binary, compiles the
# vendored libbpf), that architecture's static libelf.a/libz.a (multiarch
# -dev packages, co-installable with this machine's; ep_apt_install adds the
# dpkg architecture), and qemu-user-static, with which the packaging test runs
# the other architecture's binary.
ep_cross_apt_packages() {
    case $(dpkg --print-architecture) in
    amd64) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross libelf-dev:arm64 zlib1g-dev:arm64 qemu-user-static ;;
    arm64) echo gcc-x86-64-linux-gnu libc6-dev-amd64-cross libelf-dev:amd64 zlib1g-dev:amd64 qemu-user-static ;;
    esac
}

ep_log() { echo "[${EP_SCRIPT:-edgeplane}] $*" >&2; }
ep_die() { echo "[${EP_SCRIPT:-edgeplane}] error: $*" >&2; exit 1; }

# Benchmark helpers: run a command in network namespace NS (nsenter, not
# `ip netns exec`, which remounts /sys and hides /sys/fs/bpf); write a sysctl
# of NS (sysctl_ns NS net.ipv4.ip_forward 1) from inside it.
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }
sysctl_ns() { in_ns "$1" sh -c "echo $3 > /proc/sys/${2//.//}"; }

ep_require_root() {
    [[ $EUID -eq 0 ]] || ep_die "run as root (network namespaces, bpffs, BPF programs): sudo $0"
}

# apt-get installs only the packages that are not installed yet; no apt-get
# update at all when everything is present.
ep_apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    # pkg:arch of a foreign architecture: dpkg must know that architecture.
    local arch native
    native=$(dpkg --print-architecture)
    for p in "${missing[@]}"; do
        [[ $p == *:* ]] || continue
        arch=${p##*:}
        [[ $arch == "$native" ]] || dpkg --print-foreign-architectures | grep -qx "$arch" || {
            ep_log "dpkg --add-architecture $arch"
            dpkg --add-architecture "$arch" || ep_die "dpkg --add-architecture $arch failed"
        }
    done
    ep_log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || ep_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || ep_die "apt-get install ${missing[*]} failed"
}

# cargo/rustc 1.95+ (edition 2024). Debian 12's cargo (0.66, rustc 1.63) is
# far too old, and only crates.io and apt are reachable from the CI machines,
# so rustup cannot be fetched here: stop with instructions instead.
ep_require_cargo() {
    if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || ep_die "cargo not found. edgeplane needs Rust 1.95 or newer (edition 2024);
  Debian 12's own cargo/rustc (1.63) is too old. Install the toolchain with rustup
  (https://rustup.rs: curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain stable),
  then re-run $0."
    local v
    v=$(rustc --version 2>/dev/null | awk '{print $2}')
    if [[ -n $v ]] && ! printf '1.95.0\n%s\n' "${v%%-*}" | sort -V -C; then
        ep_die "rustc $v is older than 1.95 (edition 2024); update it (rustup update stable)"
    fi
}

# bpffs at /sys/fs/bpf (systemd mounts it at boot; minimal VMs and containers
# may not have it). mode=0700 as systemd does: the kernel's default is 1777.
ep_ensure_bpffs() {
    if [[ $(stat -fc %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
        ep_log "mounting bpffs at /sys/fs/bpf (mode 0700)"
        mount -t bpf -o mode=0700 bpf /sys/fs/bpf || ep_die "mount -t bpf -o mode=0700 bpf /sys/fs/bpf failed"
    fi
}

# cgroup v2 mount point (hybrid hosts: /sys/fs/cgroup/unified).
ep_cgroup2_root() {
    local d
    for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
        [[ $(stat -fc %T "$d" 2>/dev/null) == cgroup2fs ]] && { echo "$d"; return 0; }
    done
    return 1
}

# The Rust target of the other architecture's packages, added with rustup when
# missing (scripts/build-static.sh does the same on its own).
ep_cross_rust_target() {
    local t
    case $(uname -m) in
    x86_64) t=aarch64-unknown-linux-gnu ;;
    aarch64) t=x86_64-unknown-linux-gnu ;;
    *) return 0 ;;
    esac
    command -v rustup >/dev/null || { ep_log "warning: no rustup; the $t packages need that Rust target"; return 0; }
    rustup target list --installed | grep -qx "$t" && return 0
    ep_log "rustup target add $t"
    rustup target add "$t" >&2 || ep_die "rustup target add $t failed"
}

# Installs a cargo subcommand with `cargo install --locked` only when missing.
ep_cargo_install() {
    local bin=$1 crate=$2
    command -v "$bin" >/dev/null && return 0
    ep_log "cargo install --locked $crate"
    cargo install --locked "$crate" >&2 || ep_die "cargo install --locked $crate failed"
}

# The Debian mirror this machine's apt uses (deb822 URIs: or one-line deb),
# for debootstrap (scripts/fresh-debian.sh, scripts/package-lifecycle.sh).
ep_debian_mirror() {
    local m
    m=$(grep -hsE '^\s*URIs:\s*\S+/debian/?\s*$' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | head -1)
    [[ -n $m ]] || m=$(grep -hsE '^\s*deb\s+(\[[^]]*\]\s+)?\S+/debian/?\s+(bookworm|stable)\s' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?//' | awk '{print $1}' | head -1)
    echo "${m:-http://deb.debian.org/debian}"
}

# debootstrap --variant=minbase bookworm ROOT MIRROR: only Priority: required
# packages and apt, as a minimal new machine. Output goes to LOG; its tail is
# shown on failure.
ep_debootstrap() {
    local root=$1 mirror=$2 log=$3
    ep_log "debootstrap --variant=minbase bookworm $root $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$log" 2>&1 ||
        { tail -20 "$log" >&2; ep_die "debootstrap failed (log: $log)"; }
}

# Removes a chroot directory made by ep_debootstrap, unless something is still
# mounted under it: never delete through a mount (bind of /dev, /sys, …).
ep_remove_root() {
    local root=$1
    [[ -d $root ]] || return 0
    if findmnt -rno TARGET | grep -qF "$root/"; then
        ep_log "mounts remain under $root; not deleting it"
        return 1
    fi
    rm -rf --one-file-system "$root"
}
