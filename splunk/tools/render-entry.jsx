// The page the renders are taken from: Splunk's own Dashboard Studio components (view-only Enterprise preset)
// rendering one definition whose searches were swapped for snapshot data (ds.test) by render.cjs.
import React from "react";
import { createRoot } from "react-dom/client";
import DashboardCore from "@splunk/dashboard-core";
import { DashboardContextProvider } from "@splunk/dashboard-context";
import EnterpriseViewOnlyPreset from "@splunk/dashboard-presets/EnterpriseViewOnlyPreset";
import SplunkThemeProvider from "@splunk/themes/SplunkThemeProvider";

const definition = window.HUBBRIDGE_DEFINITION;
createRoot(document.getElementById("root")).render(
  <SplunkThemeProvider family="enterprise" colorScheme="light" density="comfortable">
    <DashboardContextProvider preset={EnterpriseViewOnlyPreset} initialDefinition={definition}>
      <DashboardCore width="100%" height="100%" />
    </DashboardContextProvider>
  </SplunkThemeProvider>
);
