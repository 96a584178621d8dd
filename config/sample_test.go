package config

import "testing"

// The shipped sample must stay loadable.
func TestSampleConfig(t *testing.T) {
	c := Default()
	if err := c.Load("../contrib/snowrain.conf", true); err != nil {
		t.Fatal(err)
	}
	if c.Milter != "unix:"+DefaultSocketDir+"/milter.sock" || c.DNSBudget.Seconds() != 5 {
		t.Errorf("sample config read as %+v", c)
	}
}
