"""``labelmill demo``: one small, real project per data type, loaded through the ordinary import path.

The content (texts, sentences, prompts, image boxes, audio timings) is package data under
``labelmill/demo/data/`` (:mod:`labelmill.demo.content` builds the projects from it);
:func:`load_demo` creates the projects, stores their media and imports their items.
"""

from __future__ import annotations

from labelmill.demo.content import DemoProject, build_demo_projects
from labelmill.demo.loader import DEMO_USER, load_demo

__all__ = ["DEMO_USER", "DemoProject", "build_demo_projects", "load_demo"]
