package main

import (
	"fmt"
	"strconv"
	"strings"
)

// localFlags are this command's own flags.
type localFlags struct {
	local       string // auto (when no cluster is configured), always or never
	keepRunning bool
}

// splitArgs takes this command's own flags, --local and --keep-running
// (spelt with one dash or two, with = or, for --local, a separate value),
// out of args; everything else is the manager's, passed on in order. The
// flag package cannot do this: it stops at the first flag it does not know.
func splitArgs(args []string) (localFlags, []string, error) {
	f := localFlags{local: "auto"}
	var manager []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			manager = append(manager, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			name = ""
		}
		switch name {
		case "local":
			if !hasValue {
				if i+1 == len(args) {
					return f, nil, fmt.Errorf("flag --local needs a value: auto, always or never")
				}
				i++
				value = args[i]
			}
			if value != "auto" && value != "always" && value != "never" {
				return f, nil, fmt.Errorf("--local must be auto, always or never, not %q", value)
			}
			f.local = value
		case "keep-running":
			f.keepRunning = true
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return f, nil, fmt.Errorf("--keep-running=%s: %w", value, err)
				}
				f.keepRunning = b
			}
		default:
			manager = append(manager, arg)
		}
	}
	return f, manager, nil
}
