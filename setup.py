"""zipasr: multilingual speech recognition with Speech-LLMs and Zipper-LoRA."""
from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.strip()
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith("pytest")
]

setup(
    name="zipasr",
    version="0.1.0",
    description="ESPnet-style recipes for multilingual ASR with Speech-LLMs and Zipper-LoRA",
    packages=find_packages(include=["zipasr", "zipasr.*"]),
    python_requires=">=3.10",
    install_requires=requirements,
    extras_require={"test": ["pytest==9.2.0"]},
)
