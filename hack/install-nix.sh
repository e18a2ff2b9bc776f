#!/bin/sh
# install-nix.sh: make sure a single-user Nix that can build flakes as root is
# available, for the tests with a real Nix build and for the local builder.
#
# Idempotent. Installs Debian's nix-bin (Nix 2.8, no daemon) with apt when
# `nix` is missing, then makes sure /etc/nix/nix.conf lets root build without
# a sandbox (pods lack the privileges it needs) and with flakes enabled.
# Everything goes to stderr except the path of the nix binary on stdout.
set -eu

log() { echo "install-nix: $*" >&2; }

if ! command -v nix >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		log "nix is not installed and this script needs root to install it"
		exit 1
	fi
	log "installing nix-bin with apt"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	# nix-setup-systemd (a recommend) only adds the daemon units, the nixbld
	# users and a nix.conf; we write the config we need below instead.
	apt-get install -y --no-install-recommends nix-bin >&2
fi

conf=/etc/nix/nix.conf
# set_conf KEY VALUE: add "KEY = VALUE" to nix.conf unless KEY is set already.
set_conf() {
	if [ -f "$conf" ] && grep -Eq "^[[:space:]]*$1[[:space:]]*=" "$conf"; then
		return 0
	fi
	if [ ! -w "$(dirname "$conf")" ] && [ ! -w "$conf" ]; then
		log "cannot write $conf to set $1 = $2"
		return 0
	fi
	log "setting '$1 = $2' in $conf"
	if [ -s "$conf" ] && [ -n "$(tail -c 1 "$conf")" ]; then
		echo >>"$conf"
	fi
	printf '%s = %s\n' "$1" "$2" >>"$conf"
}

if [ "$(id -u)" -eq 0 ]; then
	mkdir -p /etc/nix /nix/store /nix/var/nix/gcroots /nix/var/nix/profiles /nix/var/nix/temproots /nix/var/log/nix
	# Debian's nix-setup-systemd writes sandbox = false; without it Nix
	# defaults to a sandbox that containers cannot set up.
	set_conf sandbox false
	set_conf experimental-features "nix-command flakes"
	# As root Nix builds as a member of build-users-group (default nixbld),
	# which only nix-setup-systemd creates. Without the group, build as root.
	if ! getent group nixbld >/dev/null 2>&1; then
		set_conf build-users-group ""
	fi
fi

command -v nix
