"""The listener's TLS files: a wrong one is named in the error."""

from __future__ import annotations

import pytest

from swarm_oauth.serving.limits import TlsConfigError, TlsFiles


def test_the_file_that_cannot_be_read_is_the_one_named(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not read yet")
    missing_key = tmp_path / "key.pem"
    with pytest.raises(TlsConfigError, match=rf"^{missing_key}: cannot read it \(No such file"):
        TlsFiles(cert, missing_key).check()
    with pytest.raises(TlsConfigError, match=rf"^{tmp_path / 'nope.pem'}: cannot read it"):
        TlsFiles(tmp_path / "nope.pem").check()
    # Both readable: what is wrong now is their content.
    missing_key.write_text("neither")
    with pytest.raises(TlsConfigError, match="not a PEM certificate with its key"):
        TlsFiles(cert, missing_key).check()


def test_a_file_with_no_pem_in_it_says_so_without_a_none(tmp_path):
    garbage = tmp_path / "cert.pem"
    garbage.write_text("garbage\n")
    with pytest.raises(TlsConfigError) as refused:
        TlsFiles(garbage).check()
    assert (
        str(refused.value)
        == f"{garbage}: not a PEM certificate with its key (OpenSSL found none in it)"
    )
