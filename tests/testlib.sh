# SPDX-License-Identifier: MIT
# What the shell tests share; source it after setting $tmp (a scratch
# directory). Each test ends with: echo "$passed passed, $failed failed".

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: pass if the command succeeds, else show
# its output.
check() {
	local what=$1
	shift
	if "$@" >"$tmp/log" 2>&1; then
		pass "$what"
	else
		fail "$what"
		sed 's/^/    /' "$tmp/log"
	fi
}
