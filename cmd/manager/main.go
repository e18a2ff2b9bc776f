// Command manager is herokunix's one binary: the controller, and the build
// and push steps its build Jobs run.
//
//	manager [flags]                 run the controller
//	manager build --request JSON    (build container) run Nix, export for push
//	manager prepare-cache --root D  (cache container) seed or check a build cache
//	manager push --app A ...        (push container) push images, write result
//	manager install PATH            (tools container) copy this binary to PATH
package main

import (
	"fmt"
	"os"
)

func main() {
	args := os.Args[1:]
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	var err error
	switch cmd {
	case "build":
		err = runBuild(args[1:])
	case "prepare-cache":
		err = runPrepareCache(args[1:])
	case "push":
		err = runPush(args[1:])
	case "install":
		err = runInstall(args[1:])
	default:
		err = runController(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "manager %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
