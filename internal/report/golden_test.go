package report

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/**/*.golden from the current output")

// golden compares got with testdata/path, or writes it there with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/report/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./internal/report/ -update rewrites it; review the diff)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// renderDeploy is everything GitHub shows for d, as one reviewable page.
func renderDeploy(d Deploy) []byte {
	var b bytes.Buffer
	st := Status(d)
	fmt.Fprintf(&b, "==== deployment status ====\nstate: %s\ndescription: %s\nenvironment_url: %s\nlog_url: %s\n\n",
		st.State, st.Description, st.EnvironmentURL, st.LogURL)
	cr := CheckRun(d)
	fmt.Fprintf(&b, "==== check run %s ====\nstatus: %s\nconclusion: %s\ntitle: %s\n\n", CheckRunName(d.Env), cr.Status, cr.Conclusion, cr.Title)
	fmt.Fprintf(&b, "==== summary ====\n%s\n==== text ====\n%s", cr.Summary, cr.Text)
	return b.Bytes()
}

func TestDeployGolden(t *testing.T) {
	for _, sc := range deployScenarios {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("deploy", sc.name+".golden"), renderDeploy(sc.d))
		})
	}
}

func TestPreviewGolden(t *testing.T) {
	for _, sc := range previewScenarios {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("preview", sc.name+".golden"), []byte(PreviewComment(sc.p)))
		})
	}
}
