// Starts Tomcat 10 (the Debian libtomcat10-java jars, embedded) with the web application in
// the directory given as the first argument as the root context ("" path), configured by its
// WEB-INF/web.xml alone (no global default web.xml: no JSP, no default servlet). The HTTP/1.1
// connector has Tomcat's defaults, bound to 127.0.0.1 on a port the kernel picks. Prints
// `LISTENING <port> tomcat <version>` once it accepts connections.

import java.io.File;

import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;
import org.apache.catalina.util.ServerInfo;

public class Main {
    public static void main(String[] args) throws Exception {
        File webapp = new File(args[0]).getAbsoluteFile();
        Tomcat tomcat = new Tomcat();
        tomcat.setBaseDir(new File(args[1]).getAbsolutePath());
        Connector connector = new Connector();
        connector.setPort(0);
        connector.setProperty("address", "127.0.0.1");
        tomcat.setConnector(connector);
        tomcat.getHost().setAutoDeploy(false);
        tomcat.setAddDefaultWebXmlToWebapp(false);
        tomcat.addWebapp("", webapp.getPath());
        tomcat.start();
        System.out.println("LISTENING " + connector.getLocalPort() + " tomcat " + ServerInfo.getServerNumber());
        System.out.flush();
        tomcat.getServer().await();
    }
}
