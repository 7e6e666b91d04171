"""`flashc graph`: the model as a picture (SVG, or a self-contained HTML page where blocks open on click).

  scene    what is drawn: boxes for inputs, layers and collapsed blocks; edges (data, residual, tied)
  layout   where: a layered drawing computed here, no graphviz
  svg      the SVG text;  html   the page: one SVG per view, switched on click
"""
