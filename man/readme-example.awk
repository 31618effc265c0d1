# SPDX-License-Identifier: MIT
# Copies an .scd file, replacing the line %README_EXAMPLE% with the first
# ```c block of README.md, so the manual shows the example the tests compile.
# Usage: awk -f readme-example.awk README.md page.scd
function esc(s,    r, i) {
	r = ""
	while ((i = index(s, "\\")) > 0) {
		r = r substr(s, 1, i) "\\"
		s = substr(s, i + 1)
	}
	return r s
}
FNR == 1 { file++ }
file == 1 {
	if (state == 0 && $0 == "```c")
		state = 1
	else if (state == 1 && $0 == "```")
		state = 2
	else if (state == 1)
		ex[n++] = esc($0)
	next
}
$0 == "%README_EXAMPLE%" {
	for (i = 0; i < n; i++)
		print ex[i]
	used = 1
	next
}
{ print }
END {
	if (state != 2 || !used) {
		print "readme-example.awk: no ```c block in the README or no " \
		      "%README_EXAMPLE% line in the page" > "/dev/stderr"
		exit 1
	}
}
