"""The reporting wing: pictures and prose made from the numbers.

- `plots`: every chart, written to reports/<profile>/figures
- `explore`: the dataset's tables and photo grids (notebook 00)
- `report`: REPORT.md, from what the stages wrote
- `browser`: the ipywidgets browser (Predict Image, View Top50 Result, Mistakes), a subpackage
  whose own `__init__` names its modules
"""
