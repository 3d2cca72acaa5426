"""The wheel carries libfieldsync.so (`make wheel` puts it beside the
package): it is a platform wheel, for any Python 3 (ctypes, no extension
module), tagged py3-none-<platform>. Everything else is in pyproject.toml."""

from setuptools import setup

try:
    from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
except ImportError:  # older setuptools: the wheel package's
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]


class PlatformWheel(bdist_wheel):  # type: ignore[misc]
    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple:  # type: ignore[type-arg]
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"bdist_wheel": PlatformWheel})
