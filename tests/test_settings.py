"""Each setting is declared once (npvae/core/settings.py:setting) and everything else follows:
the --help groups and help text, the checks, the TOML keys, the compact checkpoint dict.
Everything here runs in-process except one real command line, so the file takes seconds."""
from __future__ import annotations

import re
from dataclasses import fields

import pytest

from npvae.core.config import EXTENSIONS, Config, ConfigError
from npvae.core.settings import GROUPS, Rule
from npvae.runs.runner import build_parser, main
from npvae.training.tomlfile import config_from_toml, write_toml
from test_run import run_cli

FIELDS = fields(Config)


def test_every_setting_has_a_group_a_help_text_and_rules():
    for f in FIELDS:
        assert f.metadata["group"] in GROUPS, f.name
        assert f.metadata["help"].strip(), f.name
        assert all(isinstance(r, Rule) and r.says for r in f.metadata["rules"]), f.name
    assert {f.metadata["group"] for f in FIELDS} == set(GROUPS)   # no empty group


def test_defaults_pass_their_own_checks():
    cfg = Config()
    for f in FIELDS:
        for r in f.metadata["rules"]:
            assert r.ok(getattr(cfg, f.name)), f.name
    assert Config().validate() == Config()


def test_extensions_are_the_fields_declared_so():
    """EXTENSIONS (imported by checkpoint code) is what the fields say, and exactly what the
    compact dict of the default config leaves out."""
    assert set(EXTENSIONS) == {f.name for f in FIELDS if f.metadata["extension"]}
    full, compact = Config().to_dict(), Config().to_dict(compact=True)
    assert set(full) - set(compact) == set(EXTENSIONS)
    assert list(compact) == [f.name for f in FIELDS if f.name not in EXTENSIONS]


def _help(monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")      # one line per flag: no wrapping to undo
    return build_parser().format_help()


def test_help_shows_every_flag_with_its_help_and_default_in_its_group(monkeypatch):
    text = _help(monkeypatch)
    titles = [re.escape(t) for t in GROUPS.values()]
    parts = re.split(r"^(" + "|".join(titles) + r"):$", text, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    assert list(sections) == list(GROUPS.values())  # in the declared order
    for f in FIELDS:
        flag = "--" + f.name.replace("_", "-")
        section = sections[GROUPS[f.metadata["group"]]]
        entries = [" ".join(e.split()) for e in re.split(r"\n(?=  -)", section)]
        mine = [e for e in entries if e.startswith(flag + " ")]
        assert len(mine) == 1, f.name
        assert f.metadata["help"] + " (default: " in mine[0], mine[0]


def test_dtype_choices_come_from_its_setting():
    dtype = next(a for a in build_parser()._actions if a.dest == "dtype")
    assert tuple(dtype.choices) == ("float32", "float64")


def test_toml_keys_are_the_fields_in_any_concern_table(tmp_path):
    """A settings file may use one [table] per concern; every key is a field name."""
    by_group: dict = {}
    for line in write_toml(Config(K=7, w_kl=0.25)).splitlines():
        key = line.split(" = ")[0]
        group = next(f.metadata["group"] for f in FIELDS if f.name == key)
        by_group.setdefault(group, []).append(line)
    text = "".join(f"[{g}]\n" + "\n".join(lines) + "\n" for g, lines in by_group.items())
    (tmp_path / "c.toml").write_text(text)
    assert config_from_toml(tmp_path / "c.toml") == Config(K=7, w_kl=0.25)


# One bad value in each concern, refused by the command line in one sentence naming it.
BAD = [
    ("data", ["--val-fraction", "1.5"], "val_fraction = 1.5 (--val-fraction) is not allowed: "
     "it must lie strictly between 0 and 1."),
    ("model", ["--encoder", "cnn"], "encoder = 'cnn' (--encoder) is not allowed: use one of "
     "dense, conv."),
    ("loss", ["--dirichlet-alpha", "0"], "dirichlet_alpha = 0.0 (--dirichlet-alpha) is not "
     "allowed: it must be > 0."),
    ("augmentation", ["--strong-scale", "1"], "strong_scale = 1.0 (--strong-scale) is not "
     "allowed: it must lie in [0, 1)."),
    ("optimiser", ["--beta2", "1"], "beta2 = 1.0 (--beta2) is not allowed: it must lie in "
     "[0, 1)."),
    ("run", ["--patience", "0"], "patience = 0 (--patience) is not allowed: it must be at "
     "least 1."),
    ("augmentation", ["--w-cons", "1"], "w_cons = 1.0 (--w-cons) is not allowed: the "
     "consistency term acts on model gmm's q(c|x) (--model gmm); leave it at 0 for the "
     "seed's model."),                        # a rule across fields
]


def test_the_bad_values_cover_every_group():
    assert {group for group, _, _ in BAD} == set(GROUPS)


@pytest.mark.parametrize("group, args, sentence", BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_a_bad_value_is_refused_in_one_sentence(tmp_path, monkeypatch, capsys, group, args,
                                                sentence):
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {sentence}\n"
    assert not list(tmp_path.iterdir())                     # nothing written
    with pytest.raises(ConfigError, match=re.escape(sentence)):
        Config.from_dict(_values(args)).validate()


def test_the_real_command_line_exits_with_status_2(tmp_path):
    _, args, sentence = BAD[3]
    proc = run_cli(*args, "--out", tmp_path / "run", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == f"error: {sentence}\n"


def _values(args: list[str]) -> dict:
    """The Config values of CLI args such as ['--w-cons', '1']."""
    ns = build_parser().parse_args(args)
    return {f.name: getattr(ns, f.name) for f in FIELDS if hasattr(ns, f.name)}
