package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// runInstall copies this binary to a path on a shared volume, so the Nix
// container (which has no herokunix) can run `manager build`.
func runInstall(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: manager install PATH")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("opening own binary: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(args[0], os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", args[0], err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("copying to %s: %w", args[0], err)
	}
	return dst.Close()
}
