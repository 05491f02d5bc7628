package e2e_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeLeadsWithTheComposeSQL: the least-privilege SQL and the table
// the README gives are the compose init files as they are, so that
// TestDeployFilesRunAsShipped tests what users copy.
func TestReadmeLeadsWithTheComposeSQL(t *testing.T) {
	readme, err := readFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sql, err := readFile(filepath.Join(repo, "deploy/compose/initdb/20-walhook.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readme, "```sql\n"+sql+"```") {
		t.Errorf("README.md does not show deploy/compose/initdb/20-walhook.sql as it is, in a sql block")
	}
	app, err := readFile(filepath.Join(repo, "deploy/compose/initdb/10-app.sql"))
	if err != nil {
		t.Fatal(err)
	}
	table := app[strings.Index(app, "CREATE TABLE"):]
	if !strings.Contains(readme, table[:strings.Index(table, ";")+1]) {
		t.Errorf("README.md does not show the users table of deploy/compose/initdb/10-app.sql as it is")
	}
	five := readme[max(0, strings.Index(readme, "## Five minutes")):]
	five = five[:max(0, strings.Index(five[1:], "\n## "))]
	if strings.Contains(five, "OWNER TO") || !strings.Contains(five, "```sql\n"+sql) {
		t.Errorf("README's Five minutes must lead with the least-privilege SQL and never change the table's owner")
	}
}
