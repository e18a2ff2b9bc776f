// Package apisource reads facts from the API's Go source for the config
// tests, so their tables cannot silently fall behind the API.
package apisource

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
)

// Reasons returns the value of every Reason* constant in the Go file at
// path (api/v1alpha1/conditions.go).
func Reasons(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			for i, n := range v.Names {
				if i >= len(v.Values) || !strings.HasPrefix(n.Name, "Reason") {
					continue
				}
				if lit, ok := v.Values[i].(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(lit.Value)
					out = append(out, s)
				}
			}
		}
	}
	if len(out) < 10 {
		return nil, fmt.Errorf("found only %d reasons in %s", len(out), path)
	}
	return out, nil
}
