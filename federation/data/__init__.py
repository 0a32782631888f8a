"""A site's data as the workbench reads it: the data dictionary, the validating site
loader, and the schema of data that has no dictionary yet.

The same code reads a hospital's real table and the synthetic or UCI sites of
``datasets_synthetic``. No Flower, no torch. Import from the submodules:
``dictionary`` (``DataDictionary``, ``ColumnSpec``), ``loader`` (``load_site_data``,
``load_sites``, ``SiteData``), ``validation``, ``unranged``, ``errors``,
``site_folder`` (writing a per-site folder), ``cli`` (``workbench data check`` and
``workbench data dictionary``).
"""
