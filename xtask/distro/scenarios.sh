#!/bin/bash
# The distro tier's scenarios, run by crashtrace-scenarios.service in the
# guest with systemd as PID 1. It records raw facts only (key=value lines in
# results.txt, plus files); the host judges them against crashtrace's log,
# the journal and the package's promises.
#
# Two boots of the same root disk:
#  1. crashtrace is not installed: install the .deb from the payload disk as
#     a user would (dpkg -i, the conffile edited for --pid 1 and the journal,
#     the unit enabled), then power off.
#  2. The packaged unit starts in boot order. Check that it started early,
#     traces, reloads and restarts while PID 1 is healthy; then the incident:
#     an ordinary crash, PID 1 faulting at address 0, crashes on the frozen
#     system, doctor. Order matters: PID 1 stays frozen after step b.
#
# The results go out as a tar archive written onto the raw third NVMe
# namespace, then the guest powers off through sysrq: once PID 1 is frozen,
# systemctl cannot do it.

# On the root disk, so the first boot's facts survive into the second.
R=/var/lib/crashtrace-tier
# Seconds the second boot's scenarios may take in all before the watchdog
# ships what there is.
SCENARIOS_LIMIT=600
mkdir -p "$R"
LOG=/var/log/crashtrace/crashtrace.jsonl
CONF=/etc/crashtrace/crashtrace.toml
CT=/usr/bin/crashtrace
# The results disk is namespace 3 of the guest's NVMe controller; find it
# by its nsid rather than trust the probe order.
OUT=/dev/nvme0n3
for d in /sys/block/nvme*n*; do
	[ "$(cat "$d/nsid" 2>/dev/null)" = 3 ] && OUT=/dev/${d##*/}
done

fact() { echo "$1=$2" >>"$R/results.txt"; echo "distro: $1=$2" >/dev/console; }
now() { cut -d' ' -f1 /proc/uptime; }
unit_prop() { timeout -k 5 20 systemctl show -p "$2" --value "$1" 2>/dev/null; }

poweroff_now() {
	sync
	echo 1 >/proc/sys/kernel/sysrq
	echo o >/proc/sysrq-trigger
}

if ! dpkg-query -W -f='${Status}' crashtrace 2>/dev/null | grep -q 'install ok installed'; then
	# Boot 1: install as a user would. The next boot starts the unit in boot
	# order, not from this script.
	fact install.uptime "$(now)"
	deb=$(ls /payload/crashtrace_*.deb | head -1)
	timeout -k 5 120 dpkg -i "$deb" >"$R/install.txt" 2>&1
	fact install.dpkg_rc "$?"
	fact install.conffile "$(dpkg-query -W -f='${Conffiles}' crashtrace | awk '{print $1}' | paste -sd, -)"
	# The shipped file has both keys commented out, with their defaults.
	sed -i -e 's/^# pid = 1$/pid = 1/' -e 's/^# journal = false$/journal = true/' "$CONF"
	fact install.config_keys "$(grep -cE '^(pid = 1|journal = true)$' "$CONF")"
	timeout -k 5 60 systemctl enable crashtrace.service >>"$R/install.txt" 2>&1
	fact install.enable_rc "$?"
	# A variant's own units (systemd-coredumpd on sid-coredumpd).
	if [ -s /payload/enable-units.txt ]; then
		timeout -k 5 60 systemctl enable $(cat /payload/enable-units.txt) >>"$R/install.txt" 2>&1
		fact install.variant_enable_rc "$?"
	fi
	fact install.done "$(now)"
	timeout -k 5 60 systemctl poweroff || poweroff_now
	exit 0
fi

# Waits up to $2 seconds (of guest uptime: TCG makes each poll slow) for a
# line matching the regex $1 in crashtrace's log.
wait_log() {
	local end
	end=$(awk -v d="$2" '{print int($1) + d}' /proc/uptime)
	while :; do
		grep -Eq "$1" "$LOG" 2>/dev/null && return 0
		[ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && return 1
		sleep 0.5
	done
}

pid1_facts() {
	fact "$1.pid1_state" "$(awk '/^State:/ {print $2}' /proc/1/status)"
	fact "$1.pid1_wchan" "$(cat /proc/1/wchan 2>/dev/null)"
	fact "$1.pid1_fds" "$(ls /proc/1/fd 2>/dev/null | wc -l)"
	local z=0 p
	for p in /proc/[0-9]*; do
		[ "$(awk '/^PPid:/ {print $2}' "$p/status" 2>/dev/null)" = 1 ] &&
			[ "$(awk '/^State:/ {print $2}' "$p/status" 2>/dev/null)" = Z ] && z=$((z + 1))
	done
	fact "$1.pid1_zombies" "$z"
	fact "$1.core_pattern" "$(cat /proc/sys/kernel/core_pattern)"
	if [ "$2" != probe ]; then
		:
	elif [ -S /run/systemd/coredump ]; then
		# A connect tells a served socket from a dead one.
		if timeout -k 5 5 /payload/vmtool collector-unreachable; then
			fact "$1.coredump_socket" connectable
		else
			fact "$1.coredump_socket" refused
		fi
	else
		fact "$1.coredump_socket" absent
	fi
}

# Runs the crasher (a store to address 0), waits up to $3 seconds (20 by
# default) for its verdict record, and, when $2 is given, up to $2 seconds
# for systemd-coredump to store it, recording what coredumpctl knows of it.
crash() {
	local step=$1
	/payload/vmtool crash &
	local pid=$!
	wait "$pid"
	local status=$?
	fact "$step.crasher_pid" "$pid"
	fact "$step.crasher_status" "$status"
	wait_log "\"type\":\"verdict\".*\"crasher\":\\{\"pid\":$pid," "${3:-20}" && fact "$step.verdict_seen" yes || fact "$step.verdict_seen" no
	[ -n "$2" ] && coredump_info "$step" "$pid" "$2"
}

# coredumpctl's view of pid $2; waits up to $3 seconds for a stored core.
coredump_info() {
	local i=0 rc
	while :; do
		timeout -k 5 20 coredumpctl --no-pager info "$2" >"$R/$1.coredumpctl.txt" 2>&1
		rc=$?
		grep -q 'Storage: /' "$R/$1.coredumpctl.txt" && break
		[ "$i" -ge "$3" ] && break
		sleep 1
		i=$((i + 1))
	done
	fact "$1.coredumpctl_rc" "$rc"
	fact "$1.coredumpctl_storage" "$(sed -n 's/^ *Storage: //p' "$R/$1.coredumpctl.txt" | head -1)"
}

# Boot 2.
boot_id=$(cat /proc/sys/kernel/random/boot_id)
fact boot_id "$boot_id"
fact boot_uptime "$(now)"
fact startup "$(timeout -k 5 10 systemd-analyze time 2>/dev/null | head -1)"
fact systemd_version "$(timeout -k 5 10 systemctl --version | head -1)"
fact kernel "$(uname -r)"
fact os "$(. /etc/os-release; echo "$PRETTY_NAME")"
fact core_pattern_initial "$(cat /proc/sys/kernel/core_pattern)"
fact core_pipe_limit "$(cat /proc/sys/kernel/core_pipe_limit)"
fact coredump_units "$(timeout -k 5 20 systemctl list-unit-files 'systemd-coredump*' --no-legend 2>/dev/null | awk '{printf "%s:%s,", $1, $2}')"
cp /proc/sys/kernel/core_pattern "$R/core_pattern_initial"

# The packaged unit: Type=notify, so "active" means READY=1 came after
# every hook was attached; started before sysinit.target, so before every
# ordinary service and the default target.
fact unit_type "$(unit_prop crashtrace.service Type)"
fact active_state "$(unit_prop crashtrace.service ActiveState)"
fact crashtrace_active_us "$(unit_prop crashtrace.service ActiveEnterTimestampMonotonic)"
fact sysinit_active_us "$(unit_prop sysinit.target ActiveEnterTimestampMonotonic)"
default=$(timeout -k 5 10 systemctl get-default)
fact default_target "$default"
# The default target may still be starting: this script is part of it.
i=0
while [ "$i" -lt 120 ] && [ "$(unit_prop "$default" ActiveEnterTimestampMonotonic)" = 0 ]; do
	sleep 1
	i=$((i + 1))
done
fact default_active_us "$(unit_prop "$default" ActiveEnterTimestampMonotonic)"
pid_start=$(unit_prop crashtrace.service MainPID)
fact main_pid_start "$pid_start"

# crashtrace must be tracing before the first crash: its header record is
# written once every hook is attached.
if wait_log '"type":"header"' 180; then
	fact crashtrace_ready "$(now)"
else
	fact crashtrace_ready no
	timeout -k 5 20 systemctl status --no-pager crashtrace.service >"$R/crashtrace-status.txt" 2>&1
fi

scenarios() {
	# a. an ordinary crash, collected by the healthy systemd-coredump
	crash a 30
	pid1_facts a no-probe

	# Reload: the same process, the configuration re-read, the log reopened.
	timeout -k 5 60 systemctl reload crashtrace
	fact reload_rc "$?"
	fact main_pid_after_reload "$(unit_prop crashtrace.service MainPID)"
	crash r
	# Restart while PID 1 is healthy: a new process, a new run in the log.
	timeout -k 5 120 systemctl restart crashtrace
	fact restart_rc "$?"
	pid_new=$(unit_prop crashtrace.service MainPID)
	fact main_pid_after_restart "$pid_new"
	fact active_after_restart "$(unit_prop crashtrace.service ActiveState)"
	# Header records of this boot: each run writes one.
	fact headers_in_log "$(grep '"type":"header"' "$LOG" | grep -c "$boot_id")"
	crash s

	# b. PID 1 takes a real fault at address 0: gdb sets its program counter to
	# 0 and detaches. (gdb also resets orig_rax, so no syscall restart moves pc.)
	fact b.gdb_start "$(now)"
	DEBUGINFOD_URLS= timeout -k 5 120 gdb -nx -batch -iex 'set auto-solib-add off' -p 1 \
		-ex 'set $pc = 0' -ex 'detach' -ex 'quit' >"$R/b.gdb.txt" 2>&1
	fact b.gdb_rc "$?"
	# The crash handler's child dumps the core, the collector handles it inline,
	# then PID 1 logs "Caught <SEGV>..." and freezes.
	i=0
	while [ "$i" -lt 120 ]; do
		timeout -k 5 20 journalctl -b -o short-monotonic --no-pager _PID=1 2>/dev/null | grep -q 'Freezing execution' && break
		sleep 1
		i=$((i + 1))
	done
	fact b.frozen_after "$i"
	timeout -k 5 30 journalctl -b -o short-monotonic --no-pager _PID=1 >"$R/b.pid1-journal.txt" 2>&1
	child=$(sed -n 's/.*Caught <SEGV>.*dumped core as pid \([0-9]*\).*/\1/p' "$R/b.pid1-journal.txt" | head -1)
	fact b.caught_line "$(grep 'Caught <' "$R/b.pid1-journal.txt" | sed 's/.*systemd\[1\]: //' | paste -sd'/' -)"
	fact b.crash_child "$child"
	wait_log '"type":"verdict".*"crasher":\{"pid":1,' 60 && fact b.verdict_seen yes || fact b.verdict_seen no
	[ -n "$child" ] && coredump_info b "$child" 30
	# crashtrace's watched state needs time to see zombies pile up or fds close.
	sleep 10
	pid1_facts b probe
	# The same crashtrace process, with no help from PID 1 from here on.
	if kill -0 "$pid_new" 2>/dev/null; then fact alive_after_freeze yes; else fact alive_after_freeze no; fi

	# c. the next crash, with PID 1 frozen
	crash c 5 60
	pid1_facts c probe

	# e. doctor, with PID 1 frozen and the pattern as the freeze left it
	timeout -k 5 60 "$CT" doctor >"$R/e.doctor.txt" 2>&1
	fact e.doctor_rc "$?"

	# d. systemd's own pattern put back by hand: the collector now finds PID 1's
	# socket closed
	cat "$R/core_pattern_initial" >/proc/sys/kernel/core_pattern
	fact d.core_pattern_restored "$(cat /proc/sys/kernel/core_pattern)"
	crash d 5 60
	pid1_facts d probe
	timeout -k 5 60 "$CT" doctor >"$R/d.doctor.txt" 2>&1
	fact d.doctor_rc "$?"
	if kill -0 "$pid_new" 2>/dev/null; then fact alive_at_end yes; else fact alive_at_end no; fi
}

# Every step has its own timeout, and the whole run one more: whatever hangs,
# the results so far are shipped and the guest powers off.
scenarios &
main=$!
# Guest uptime, not loop turns: under a loaded TCG host each turn of this
# loop takes far longer than its sleep.
end=$(awk -v d="$SCENARIOS_LIMIT" '{print int($1) + d}' /proc/uptime)
while kill -0 "$main" 2>/dev/null; do
	if [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ]; then
		fact watchdog "scenarios still running after ${SCENARIOS_LIMIT} s; killed"
		pkill -KILL -P "$main" 2>/dev/null
		kill -KILL "$main" 2>/dev/null
		break
	fi
	sleep 1
done

# Stop crashtrace by signal (systemctl needs a live PID 1) so it writes its
# summary, then ship everything.
ctpid=$(pidof crashtrace)
if [ -n "$ctpid" ]; then
	kill -INT $ctpid
	i=0
	while [ "$i" -lt 20 ] && kill -0 $ctpid 2>/dev/null; do sleep 0.5; i=$((i + 1)); done
fi
cp "$LOG" "$R/crashtrace.jsonl" 2>/dev/null
# journald outlives PID 1's freeze: each verdict should be there as a
# structured entry, found by its MESSAGE_ID (one "verdict id" per line).
while read -r verdict id; do
	[ -n "$id" ] && timeout -k 5 30 journalctl -b -o json --no-pager "MESSAGE_ID=$id" >>"$R/journal-verdicts.json" 2>>"$R/journal-verdicts.err"
done </payload/message-ids.txt
fact journal_queried "$(wc -l </payload/message-ids.txt)"
timeout -k 5 30 journalctl -b -o short-monotonic --no-pager >"$R/journal.txt" 2>&1
fact done "$(now)"
tar -C "$R" -cf "$OUT" . && sync
echo "distro: results written" >/dev/console
poweroff_now
