package main

import (
	"flag"

	"github.com/snowrain/snowrain/config"
)

// configFlags are --config and some options of the configuration as
// flags of a command other than serve: the file's settings apply, and
// the flags given override them, as for serve.
type configFlags struct {
	path  *string
	given []setting // in the order given
}

type setting struct{ name, value string }

// bindConfig registers --config and the option flags names (as
// config.Bind names them, checked when parsed as serve's are).
func bindConfig(fs *flag.FlagSet, names ...string) *configFlags {
	cf := &configFlags{path: fs.String("config", config.DefaultPath, "configuration `FILE` (TOML): its settings apply unless a flag overrides them")}
	all := flag.NewFlagSet("config", flag.ContinueOnError)
	probe := config.Default()
	probe.Bind(all)
	for _, name := range names {
		f := all.Lookup(name)
		if f == nil {
			panic("bindConfig: config.Bind has no flag " + name)
		}
		hook(fs, f, func(value string, err error) {
			if err == nil {
				cf.given = append(cf.given, setting{name, value})
			}
		})
	}
	return cf
}

// load reads the configuration file (an error when --config named one
// that is missing) and applies the flags given over it.
func (cf *configFlags) load(c *call) (config.Config, error) {
	cfg := config.Default()
	if err := cfg.Load(*cf.path, c.given("config")); err != nil {
		return cfg, err
	}
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	cfg.Bind(fs)
	for _, s := range cf.given {
		if err := fs.Set(s.name, s.value); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}
