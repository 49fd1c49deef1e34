#!/bin/bash
# The .deb's service scenario for the distro tier (`cargo xtask
# distro-test`): the package as a user installs it, in a real Debian userland
# with systemd as PID 1. Records raw facts (key=value lines in
# $R/results.txt); the host judges them (xtask/src/dist/service_vm.rs).
#
# Two boots. The first (no crashtrace package yet) installs the .deb from
# the payload disk, enables the unit and reboots; the second checks that
# the service started early, traces, reloads, restarts while PID 1 is
# healthy, and keeps tracing and logging after PID 1 faults and freezes.
# Needs from the tier: /payload/crashtrace_*.deb, /payload/vmtool (crash),
# gdb in the image, and a results device ($OUT) the host reads.

R=${R:-/run/results}
mkdir -p "$R"
LOG=/var/log/crashtrace/crashtrace.jsonl

fact() { echo "$1=$2" >>"$R/results.txt"; echo "deb: $1=$2" >/dev/console; }
now() { cut -d' ' -f1 /proc/uptime; }
mono_us() { systemctl show -p "$2" --value "$1" 2>/dev/null; }

# Waits up to $2 seconds for a line matching the regex $1 in the log.
wait_log() {
	local end
	end=$(awk -v d="$2" '{print int($1) + d}' /proc/uptime)
	while :; do
		grep -Eq "$1" "$LOG" 2>/dev/null && return 0
		[ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && return 1
		sleep 0.5
	done
}

# Crashes a process (a store to address 0) and records whether its verdict
# reached the log.
crash() {
	/payload/vmtool crash &
	local pid=$!
	wait "$pid"
	fact "$1.crasher_pid" "$pid"
	if wait_log "\"type\":\"verdict\".*\"crasher\":\\{\"pid\":$pid," "${2:-30}"; then
		fact "$1.verdict_logged" yes
	else
		fact "$1.verdict_logged" no
	fi
}

if ! dpkg-query -W -f='${Status}' crashtrace 2>/dev/null | grep -q 'install ok installed'; then
	# Boot 1: install as a user would, then boot again so the unit starts
	# in boot order, not from this script.
	deb=$(ls /payload/crashtrace_*.deb | head -1)
	dpkg -i "$deb" >"$R/install.txt" 2>&1
	fact install.dpkg_rc "$?"
	fact install.conffile "$(dpkg-query -W -f='${Conffiles}' crashtrace | awk '{print $1}' | paste -sd, -)"
	systemctl enable crashtrace.service >>"$R/install.txt" 2>&1
	fact install.enable_rc "$?"
	systemctl reboot
	exit 0
fi

# Boot 2.
fact boot_uptime "$(now)"
fact systemd_version "$(systemctl --version | head -1)"
fact unit_type "$(systemctl show -p Type --value crashtrace)"
fact active_state "$(systemctl show -p ActiveState --value crashtrace)"
# Started early: crashtrace was active (READY=1 sent: attached) before
# sysinit.target, so before every ordinary service and the default target.
fact crashtrace_active_us "$(mono_us crashtrace.service ActiveEnterTimestampMonotonic)"
fact sysinit_active_us "$(mono_us sysinit.target ActiveEnterTimestampMonotonic)"
fact default_target "$(systemctl get-default)"
fact default_active_us "$(mono_us "$(systemctl get-default)" ActiveEnterTimestampMonotonic)"
pid_start=$(systemctl show -p MainPID --value crashtrace)
fact main_pid_start "$pid_start"

# It traces.
crash a
# Reload: same process, the configuration re-read, the log reopened.
systemctl reload crashtrace
fact reload_rc "$?"
fact main_pid_after_reload "$(systemctl show -p MainPID --value crashtrace)"
crash r
# Restart while PID 1 is healthy: a new process, a new run in the log.
systemctl restart crashtrace
fact restart_rc "$?"
pid_new=$(systemctl show -p MainPID --value crashtrace)
fact main_pid_after_restart "$pid_new"
fact active_after_restart "$(systemctl show -p ActiveState --value crashtrace)"
fact headers_in_log "$(grep -c '"type":"header"' "$LOG")"
crash s

# PID 1 takes a real fault at address 0 and freezes.
DEBUGINFOD_URLS= timeout 120 gdb -nx -batch -iex 'set auto-solib-add off' -p 1 \
	-ex 'set $pc = 0' -ex 'detach' -ex 'quit' >"$R/gdb.txt" 2>&1
fact gdb_rc "$?"
i=0
while [ "$i" -lt 120 ]; do
	journalctl -b --no-pager _PID=1 2>/dev/null | grep -q 'Freezing execution' && break
	sleep 1
	i=$((i + 1))
done
fact frozen_after "$i"
fact pid1_verdict_logged "$(wait_log '"type":"verdict".*"crasher":\{"pid":1,' 60 && echo yes || echo no)"
# Still the same process, still tracing, still logging, with no help from
# PID 1 (no systemctl from here on).
if kill -0 "$pid_new" 2>/dev/null; then fact alive_after_freeze yes; else fact alive_after_freeze no; fi
crash f 60
sleep 5
crash g 60
if kill -0 "$pid_new" 2>/dev/null; then fact alive_at_end yes; else fact alive_at_end no; fi
cp "$LOG" "$R/crashtrace.jsonl" 2>/dev/null
fact done "$(now)"
