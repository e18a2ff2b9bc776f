package nixbuild

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxFlakeRefLen bounds a flake reference.
const MaxFlakeRefLen = 1024

// maxAttributeLen bounds a flake attribute path.
const maxAttributeLen = 1024

// ValidateFlakeRef refuses flake references that could not be a flake ref or
// that Nix could take for something else: empty, too long, not UTF-8, with
// whitespace or control characters, starting with '-' (an option), or with a
// '#' fragment (attributes are given per process, not in the ref).
func ValidateFlakeRef(ref string) error {
	if ref == "" {
		return errors.New("flake reference is empty")
	}
	if len(ref) > MaxFlakeRefLen {
		return fmt.Errorf("flake reference is %d bytes long, over the limit of %d", len(ref), MaxFlakeRefLen)
	}
	if err := checkText(ref); err != nil {
		return fmt.Errorf("flake reference %q %w", ref, err)
	}
	if strings.HasPrefix(ref, "-") {
		return fmt.Errorf("flake reference %q starts with '-'", ref)
	}
	if strings.Contains(ref, "#") {
		return fmt.Errorf("flake reference %q contains '#': give the attribute per process instead", ref)
	}
	return nil
}

// ValidateAttribute refuses flake attribute paths that are empty, too long,
// contain whitespace or control characters, or start with '-'.
func ValidateAttribute(attr string) error {
	if attr == "" {
		return errors.New("flake attribute is empty")
	}
	if len(attr) > maxAttributeLen {
		return fmt.Errorf("flake attribute is %d bytes long, over the limit of %d", len(attr), maxAttributeLen)
	}
	if err := checkText(attr); err != nil {
		return fmt.Errorf("flake attribute %q %w", attr, err)
	}
	if strings.HasPrefix(attr, "-") {
		return fmt.Errorf("flake attribute %q starts with '-'", attr)
	}
	if strings.Contains(attr, "#") {
		return fmt.Errorf("flake attribute %q contains '#'", attr)
	}
	return nil
}

// checkText refuses invalid UTF-8, whitespace and control characters.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("contains %U, which is whitespace or a control character", r)
		}
	}
	return nil
}
