# Homebrew formula for mailtoken, built from the sdist of this tree into a private virtualenv.
# Not tested: the test suite runs on Debian and has no brew; tests/test_packaging.py only checks that `version`
# matches mailtoken's. Before the first `brew install`, in a tap of your own (`brew tap-new you/mailtoken`, then
# copy this file into its Formula/):
#   1. python -m build --sdist, and point `url` at the tarball (a release URL, or file:///…) with its `sha256`
#      (`shasum -a 256 dist/mailtoken-*.tar.gz`);
#   2. `brew update-python-resources mailtoken` writes one `resource` block per PyPI dependency (msal, requests,
#      PyJWT, truststore, keyring, platformdirs, filelock, tomlkit and theirs) with its hash. They are not written
#      here: hashes we cannot install-test would only go stale.

class Mailtoken < Formula
  include Language::Python::Virtualenv

  desc "OAuth2 token helper for mail clients (msmtp, mbsync, mutt, offlineimap3, ...)"
  homepage "https://example.org/mailtoken"
  url "file:///path/to/mailtoken-0.1.0.tar.gz"
  version "0.1.0"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "MIT"

  depends_on "certifi"
  depends_on "cryptography"
  depends_on "python@3.13"

  # resource "msal" do ... end, and the others: see step 2 above.

  def install
    virtualenv_install_with_resources
    # pip put the man pages and completions under the virtualenv's share/: link them where Homebrew looks.
    share_dir = libexec/"share"
    man1.install_symlink share_dir/"man/man1/mailtoken.1"
    man5.install_symlink share_dir/"man/man5/mailtoken.toml.5"
    bash_completion.install_symlink share_dir/"bash-completion/completions/mailtoken.bash" => "mailtoken"
    zsh_completion.install_symlink share_dir/"zsh/site-functions/_mailtoken"
    fish_completion.install_symlink share_dir/"fish/vendor_completions.d/mailtoken.fish"
  end

  test do
    assert_match "mailtoken #{version}", shell_output("#{bin}/mailtoken --version")
    # The cached path's folders on macOS: with no account, `token` fails as a configuration error.
    ENV["MAILTOKEN_CONFIG"] = testpath/"config.toml"
    (testpath/"config.toml").write ""
    shell_output("#{bin}/mailtoken token work 2>&1", 78)
  end
end
