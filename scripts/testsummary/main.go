// Command testsummary reads `go test -json` on stdin, prints what plain
// `go test` would (package results, and the output of failed tests) and
// ends with one line "N passed, N failed, N skipped" counting every test
// and subtest, so CI logs say how many tests ran. It exits 1 if anything
// failed. Standard library only: run it with `go run`.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	var passed, failed, skipped int
	out := map[string]*strings.Builder{} // test output until it ends
	badPkg := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors arrive as plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Test == "" && e.Action == "output":
			if !strings.HasPrefix(e.Output, "PASS\n") && !strings.HasPrefix(e.Output, "FAIL\n") {
				fmt.Print(e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			badPkg = true
		case e.Test == "":
			// package-level pass and skip ("no test files") are not tests
		case e.Action == "output":
			if out[key] == nil {
				out[key] = &strings.Builder{}
			}
			out[key].WriteString(e.Output)
		case e.Action == "pass":
			passed++
			delete(out, key)
		case e.Action == "skip":
			skipped++
			delete(out, key)
		case e.Action == "fail":
			failed++
			if b := out[key]; b != nil {
				fmt.Print(b.String())
			}
			delete(out, key)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || badPkg {
		os.Exit(1)
	}
}
