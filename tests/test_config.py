import logging
import os
import subprocess
import sys

import pytest

import aiotranslate
from aiotranslate import _config


@pytest.mark.skipif(bool(os.environ.get("AIOTRANSLATE_NO_NATIVE")), reason="reference ops forced")
def test_native_kernels_are_built_and_imported():
    """The tests exercise the compiled kernels, not the numpy fallback of a shadowing source tree."""
    assert _config.config()["native_kernels"]


def test_show_config_reports_build_and_blas(capsys):
    aiotranslate.show_config()
    text = capsys.readouterr().out
    assert f"aiotranslate {aiotranslate.__version__}" in text
    assert "OpenMP:" in text or "NOT BUILT" in text
    assert "BLAS:" in text


def test_cli_version_and_show_config():
    run = [sys.executable, "-m", "aiotranslate"]
    version = subprocess.run(run + ["--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"aiotranslate {aiotranslate.__version__}"
    config = subprocess.run(run + ["show-config"], capture_output=True, text=True, check=True)
    assert "BLAS:" in config.stdout


def test_log_level_is_the_package_loggers():
    """CTranslate2's set_log_level / get_log_level, with the logging module's levels."""
    before = logging.getLogger("aiotranslate").level
    try:
        aiotranslate.set_log_level(logging.DEBUG)
        assert aiotranslate.get_log_level() == logging.DEBUG
        assert logging.getLogger("aiotranslate.server").isEnabledFor(logging.DEBUG)
    finally:
        logging.getLogger("aiotranslate").setLevel(before)
